using MLNet.Diffusion.Hosting;
using MLNet.Diffusion.Pipeline;
using MLNet.Diffusion.Tests.TestModels;

namespace MLNet.Diffusion.Tests.Hosting;

public class DiffusionPipelineProviderTests
{
    [Fact]
    public void SpellingsOfOneFolderShareOnePipelineLoadedOnceUnderConcurrentRequests()
    {
        using var folder = TestModelFactory.CreateTemp();
        using var provider = new DiffusionPipelineProvider();
        Assert.Empty(provider.LoadedModelPaths);
        string relative = Path.GetRelativePath(Environment.CurrentDirectory, folder.Path);
        string[] spellings = [folder.Path, folder.Path + Path.DirectorySeparatorChar, relative, Path.Combine(folder.Path, "unet", "..")];
        var seen = new StableDiffusionPipeline[32];
        Parallel.For(0, seen.Length, new ParallelOptions { MaxDegreeOfParallelism = 8 }, i => seen[i] = provider.Get(spellings[i % spellings.Length]));
        Assert.All(seen, p => Assert.Same(seen[0], p));
        Assert.Equal([folder.Path], provider.LoadedModelPaths);
    }

    [Fact]
    public void FailedLoadIsNotRememberedSoALaterRequestLoads()
    {
        var dir = Directory.CreateTempSubdirectory("mlnd-provider-");
        try
        {
            using var provider = new DiffusionPipelineProvider();
            Assert.ThrowsAny<IOException>(() => provider.Get(dir.FullName));   // empty folder: a component is missing
            Assert.Empty(provider.LoadedModelPaths);
            TestModelFactory.Create(dir.FullName, new TestModelOptions());
            var pipeline = provider.Get(dir.FullName);
            Assert.Same(pipeline, provider.Get(dir.FullName));
        }
        finally { dir.Delete(true); }
    }

    [Fact]
    public void DisposingTheProviderDisposesItsPipelinesAndRefusesNewRequests()
    {
        using var a = TestModelFactory.CreateTemp();
        using var b = TestModelFactory.CreateTemp();
        var provider = new DiffusionPipelineProvider();
        var pa = provider.Get(a.Path);
        var pb = provider.Get(b.Path);
        Assert.NotSame(pa, pb);
        Assert.Equal(2, provider.LoadedModelPaths.Count);
        provider.Dispose();
        AssertDisposed(pa);
        AssertDisposed(pb);
        Assert.Throws<ObjectDisposedException>(() => provider.Get(a.Path));
        provider.Dispose();   // twice is harmless
    }

    internal static void AssertDisposed(StableDiffusionPipeline pipeline) =>
        Assert.Throws<ObjectDisposedException>(() => pipeline.UNet.Bind(1, 8, 8, pipeline.TextEncoder.SequenceLength, pipeline.UNet.EmbeddingWidth));
}
