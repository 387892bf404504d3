#pragma warning disable MEAI001 // IImageGenerator is experimental in Microsoft.Extensions.AI; these tests resolve it.
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using MLNet.Diffusion.Hosting;
using MLNet.Diffusion.Pipeline;
using MLNet.Diffusion.Runtime;
using MLNet.Diffusion.Tests.TestModels;
using static MLNet.Diffusion.Tests.Hosting.DiffusionPipelineProviderTests;

namespace MLNet.Diffusion.Tests.Hosting;

public class StableDiffusionServiceCollectionTests
{
    private static ServiceProvider Build(Action<IServiceCollection> register, CollectingLoggerFactory? logs = null)
    {
        var services = new ServiceCollection();
        if (logs is not null) services.AddSingleton<ILoggerFactory>(logs);
        register(services);
        return services.BuildServiceProvider(new ServiceProviderOptions { ValidateScopes = true, ValidateOnBuild = true });
    }

    [Fact]
    public void OnePipelineIsLoadedLazilyOnceAndSharedAcrossResolutionsScopesAndThreads()
    {
        using var folder = TestModelFactory.CreateTemp();
        var logs = new CollectingLoggerFactory();
        using var container = Build(s => s.AddStableDiffusion(o => o.ModelPath = folder.Path), logs);
        var provider = container.GetRequiredService<IDiffusionPipelineProvider>();
        Assert.Equal(0, logs.Loads);   // registering and building the container loads nothing
        Assert.Empty(provider.LoadedModelPaths);

        var first = container.GetRequiredService<StableDiffusionPipeline>();
        var seen = new List<StableDiffusionPipeline>();
        for (int i = 0; i < 10; i++)
        {
            using var scope = container.CreateScope();
            for (int j = 0; j < 5; j++) seen.Add(scope.ServiceProvider.GetRequiredService<StableDiffusionPipeline>());
        }
        var parallel = new StableDiffusionPipeline[64];
        Parallel.For(0, parallel.Length, i =>
        {
            using var scope = container.CreateScope();
            parallel[i] = scope.ServiceProvider.GetRequiredService<StableDiffusionPipeline>();
        });
        Assert.All(seen.Concat(parallel), p => Assert.Same(first, p));
        Assert.All(seen.Concat(parallel), p => Assert.Same(first.UNet, p.UNet));

        // The image generator and the provider (as the ML.NET transforms use it) hand out the same pipeline.
        var generator = container.GetRequiredService<IImageGenerator>();
        Assert.Same(first, generator.GetService<StableDiffusionPipeline>());
        Assert.Same(first, provider.Get(folder.Path + Path.DirectorySeparatorChar));
        Assert.Same(container.GetRequiredService<DiffusionPipelineProvider>(), provider);

        Assert.Equal(1, logs.Loads);   // the ONNX sessions were created once
        Assert.Equal([folder.Path], provider.LoadedModelPaths);
        Assert.Contains(logs.Entries, e => e.Category == typeof(StableDiffusionPipeline).FullName && e.Message.Contains(folder.Path));
    }

    [Fact]
    public void DisposingTheContainerDisposesThePipeline()
    {
        using var folder = TestModelFactory.CreateTemp();
        var container = Build(s => s.AddStableDiffusion(o => o.ModelPath = folder.Path));
        var pipeline = container.GetRequiredService<StableDiffusionPipeline>();
        var provider = container.GetRequiredService<IDiffusionPipelineProvider>();
        pipeline.Generate("red cat", 1, new GenerationOptions { Steps = 2 }).Image.Dispose();
        container.Dispose();
        AssertDisposed(pipeline);
        Assert.Throws<ObjectDisposedException>(() => provider.Get(folder.Path));
    }

    [Fact]
    public async Task NamedRegistrationsGiveOnePipelinePerFolderAndKeyedGenerators()
    {
        using var a = TestModelFactory.CreateTemp();
        using var b = TestModelFactory.CreateTemp();
        var logs = new CollectingLoggerFactory();
        using var container = Build(s => s
            .AddStableDiffusion(o => o.ModelPath = a.Path)
            .AddStableDiffusion("a", o => o.ModelPath = a.Path + Path.DirectorySeparatorChar)
            .AddStableDiffusion("b", o => { o.ModelPath = b.Path; o.DefaultGenerationOptions = new GenerationOptions { Steps = 2, Width = 16, Height = 24 }; }),
            logs);
        var pa = container.GetRequiredKeyedService<StableDiffusionPipeline>("a");
        var pb = container.GetRequiredKeyedService<StableDiffusionPipeline>("b");
        Assert.NotSame(pa, pb);
        Assert.Same(pa, container.GetRequiredService<StableDiffusionPipeline>());
        Assert.Same(pb, container.GetRequiredKeyedService<StableDiffusionPipeline>("b"));
        Assert.Equal(2, logs.Loads);

        var gb = container.GetRequiredKeyedService<IImageGenerator>("b");
        Assert.Equal(b.Path, gb.GetService<ImageGeneratorMetadata>()!.DefaultModelId);
        Assert.Equal(a.Path, container.GetRequiredKeyedService<IImageGenerator>("a").GetService<ImageGeneratorMetadata>()!.DefaultModelId);
        Assert.Same(gb, container.GetRequiredKeyedService<IImageGenerator>("b"));

        // The registration's DefaultGenerationOptions reach its generator: 16×24 without an ImageSize.
        var response = await gb.GenerateImagesAsync("red cat", new ImageGenerationOptions { AdditionalProperties = new() { ["seed"] = 3 } });
        using var image = Microsoft.ML.Data.MLImage.CreateFromStream(new MemoryStream(((DataContent)Assert.Single(response.Contents)).Data.ToArray()));
        Assert.Equal((16, 24), (image.Width, image.Height));
    }

    public static TheoryData<string, string> BadOptions => new()
    {
        { "no-path", "StableDiffusionServiceOptions.ModelPath is required" },
        { "missing-folder", "StableDiffusionServiceOptions.ModelPath" },
        { "intra-threads", "StableDiffusionServiceOptions.Runtime.IntraOpThreads" },
        { "inter-threads", "StableDiffusionServiceOptions.Runtime.InterOpThreads" },
        { "device-id", "StableDiffusionServiceOptions.Runtime.DeviceId" },
        { "device", "StableDiffusionServiceOptions.Runtime.Device" },
        { "steps", "StableDiffusionServiceOptions.DefaultGenerationOptions.Steps" },
        { "width", "StableDiffusionServiceOptions.DefaultGenerationOptions.Width" },
        { "guidance", "StableDiffusionServiceOptions.DefaultGenerationOptions.GuidanceScale" },
        { "eta", "StableDiffusionServiceOptions.DefaultGenerationOptions.Eta" },
        { "scheduler", "StableDiffusionServiceOptions.DefaultGenerationOptions.Scheduler" },
        { "batch", "StableDiffusionServiceOptions.MaxBatchSize" },
        { "null-generation", "StableDiffusionServiceOptions.DefaultGenerationOptions must not be null" },
    };

    [Theory]
    [MemberData(nameof(BadOptions))]
    public void BadOptionsFailAtFirstResolutionNamingTheOption(string problem, string named)
    {
        using var folder = TestModelFactory.CreateTemp();
        void Configure(StableDiffusionServiceOptions o)
        {
            o.ModelPath = folder.Path;
            switch (problem)
            {
                case "no-path": o.ModelPath = " "; break;
                case "missing-folder": o.ModelPath = Path.Combine(folder.Path, "no-such-model"); break;
                case "intra-threads": o.Runtime.IntraOpThreads = -1; break;
                case "inter-threads": o.Runtime.InterOpThreads = -2; break;
                case "device-id": o.Runtime.DeviceId = -1; break;
                case "device": o.Runtime.Device = (ExecutionDevice)7; break;
                case "steps": o.DefaultGenerationOptions.Steps = 0; break;
                case "width": o.DefaultGenerationOptions.Width = 100; break;
                case "guidance": o.DefaultGenerationOptions.GuidanceScale = float.NaN; break;
                case "eta": o.DefaultGenerationOptions.Eta = 2; break;
                case "scheduler": o.DefaultGenerationOptions.Scheduler = "no-such-scheduler"; break;
                case "batch": o.MaxBatchSize = 0; break;
                case "null-generation": o.DefaultGenerationOptions = null!; break;
            }
        }
        using var container = Build(s => s.AddStableDiffusion(Configure).AddStableDiffusion("sd2", Configure));
        var e = Assert.Throws<OptionsValidationException>(() => container.GetRequiredService<StableDiffusionPipeline>());
        Assert.Contains(named, e.Message);
        var keyed = Assert.Throws<OptionsValidationException>(() => container.GetRequiredKeyedService<IImageGenerator>("sd2"));
        Assert.Contains($"'sd2': {named}", keyed.Message);
        Assert.Empty(container.GetRequiredService<IDiffusionPipelineProvider>().LoadedModelPaths);
    }

    [Fact]
    public void AllProblemsAreReportedTogether()
    {
        using var container = Build(s => s.AddStableDiffusion(o => { o.Runtime.IntraOpThreads = -1; o.DefaultGenerationOptions.Steps = 5000; }));
        var e = Assert.Throws<OptionsValidationException>(() => container.GetRequiredService<StableDiffusionPipeline>());
        Assert.Equal(3, e.Failures.Count());
        Assert.Contains("ModelPath", e.Message);
        Assert.Contains("IntraOpThreads", e.Message);
        Assert.Contains("Steps", e.Message);
    }

    [Fact]
    public void RegistrationsSharingAFolderMustAgreeOnRuntimeSettings()
    {
        using var folder = TestModelFactory.CreateTemp();
        using var container = Build(s => s
            .AddStableDiffusion("fast", o => { o.ModelPath = folder.Path; o.Runtime.IntraOpThreads = 1; })
            .AddStableDiffusion("slow", o => { o.ModelPath = folder.Path; o.Runtime.IntraOpThreads = 2; }));
        var e = Assert.Throws<InvalidOperationException>(() => container.GetRequiredKeyedService<StableDiffusionPipeline>("slow"));
        Assert.Contains("'fast'", e.Message);
        Assert.Contains("'slow'", e.Message);
        Assert.Contains("IntraOpThreads (1 vs 2)", e.Message);
    }

    [Fact]
    public void RegistrationsSharingAFolderMustAgreeOnLowMemory()
    {
        using var folder = TestModelFactory.CreateTemp();
        using var container = Build(s => s
            .AddStableDiffusion("small", o => { o.ModelPath = folder.Path; o.Runtime.LowMemory = true; })
            .AddStableDiffusion("quick", o => o.ModelPath = folder.Path));
        var e = Assert.Throws<InvalidOperationException>(() => container.GetRequiredKeyedService<StableDiffusionPipeline>("quick"));
        Assert.Contains("LowMemory (True vs False)", e.Message);
    }

    [Fact]
    public void DeviceSettingsReachTheRuntimeAndFallbackIsLoggedThroughTheContainer()
    {
        using var folder = TestModelFactory.CreateTemp();
        var logs = new CollectingLoggerFactory();
        using (var strict = Build(s => s.AddStableDiffusion(o => { o.ModelPath = folder.Path; o.Runtime.Device = ExecutionDevice.Cuda; o.Runtime.FallbackToCpu = false; })))
        {
            var e = Assert.Throws<InvalidOperationException>(() => strict.GetRequiredService<StableDiffusionPipeline>());
            Assert.Contains("FallbackToCpu", e.Message);
        }
        using var lenient = Build(s => s.AddStableDiffusion(o => { o.ModelPath = folder.Path; o.Runtime.Device = ExecutionDevice.Cuda; o.Runtime.IntraOpThreads = 1; }), logs);
        var pipeline = lenient.GetRequiredService<StableDiffusionPipeline>();
        Assert.Equal(ExecutionDevice.Cpu, pipeline.Device);
        Assert.Contains("CUDA", pipeline.FallbackReason);
        Assert.Contains(logs.Entries, e => e.Level == LogLevel.Warning && e.Message.Contains("CUDA") && e.Category == typeof(StableDiffusionPipeline).FullName);
    }

    [Fact]
    public void OptionsCanComeFromTheOptionsSystem()
    {
        using var folder = TestModelFactory.CreateTemp();
        using var container = Build(s =>
        {
            s.AddStableDiffusion(_ => { });
            s.Configure<StableDiffusionServiceOptions>(o => o.ModelPath = folder.Path);   // as configuration binding does
        });
        Assert.Equal(folder.Path, container.GetRequiredService<StableDiffusionPipeline>().Folder.Directory);
    }
}
