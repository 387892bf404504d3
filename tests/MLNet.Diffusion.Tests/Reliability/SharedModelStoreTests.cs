using Microsoft.Extensions.DependencyInjection;
using Microsoft.ML;
using Microsoft.ML.Data;
using MLNet.Diffusion.Hosting;
using MLNet.Diffusion.Pipeline;
using MLNet.Diffusion.Runtime;
using MLNet.Diffusion.Tests.TestModels;
using MLNet.Diffusion.Transforms;

namespace MLNet.Diffusion.Tests.Reliability;

/// <summary>
/// One store of loaded models: dependency injection, the ML.NET transforms and a direct <c>Load</c> of one folder create
/// each ONNX session once, and the last release frees them.
/// </summary>
[Collection(SerialReliabilityCollection.Name)]
public sealed class SharedModelStoreTests
{
    private sealed class Row
    {
        public string Prompt { get; set; } = "";
    }

    [Fact]
    public void DependencyInjectionMLNetAndADirectLoadShareOneSetOfSessions()
    {
        using var folder = TestModelFactory.CreateTemp();
        long before = OnnxModelComponent.LiveSessions;

        var services = new ServiceCollection();
        services.AddStableDiffusion(o => o.ModelPath = folder.Path);
        var container = services.BuildServiceProvider();
        var injected = container.GetRequiredService<StableDiffusionPipeline>();
        long one = OnnxModelComponent.LiveSessions - before;
        Assert.InRange(one, 3, 4); // text encoder, UNet, VAE decoder (and encoder)

        var ml = new MLContext(); // FallbackToCpu false by default: irrelevant on the CPU, so the model is shared
        var table = ml.Data.LoadFromEnumerable(new[] { new Row { Prompt = "a red cat" } });
        var transformer = ml.Transforms.GenerateImages(new DiffusionOptions { ModelPath = folder.Path + Path.DirectorySeparatorChar, Steps = 2 }).Fit(table);
        using (var image = transformer.Transform(table).GetColumn<MLImage>("Image").Single()) Assert.True(image.Width > 0);
        var direct = StableDiffusionPipeline.Load(Path.GetRelativePath(Environment.CurrentDirectory, folder.Path));
        _ = direct.Generate("a blue dog", 1, new GenerationOptions { Steps = 2 }).Image;

        Assert.Equal(one, OnnxModelComponent.LiveSessions - before);
        Assert.Same(injected.UNet, direct.UNet);

        container.Dispose();
        direct.Dispose();
        Assert.Equal(one, OnnxModelComponent.LiveSessions - before); // the transformer still holds the model
        transformer.Dispose();
        Assert.Equal(before, OnnxModelComponent.LiveSessions);
    }

    [Fact]
    public void DifferentRuntimeSettingsLoadTheirOwnSessions()
    {
        using var folder = TestModelFactory.CreateTemp();
        using var a = StableDiffusionPipeline.Load(folder.Path, new DiffusionRuntimeOptions { IntraOpThreads = 1 });
        using var b = StableDiffusionPipeline.Load(folder.Path, new DiffusionRuntimeOptions { IntraOpThreads = 2 });
        using var c = StableDiffusionPipeline.Load(folder.Path, new DiffusionRuntimeOptions { IntraOpThreads = 1, Logger = null });
        Assert.NotSame(a.UNet, b.UNet);
        Assert.Same(a.UNet, c.UNet);
    }
}
