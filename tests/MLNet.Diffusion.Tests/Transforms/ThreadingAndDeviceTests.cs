using Microsoft.ML;
using Microsoft.ML.Runtime;
using MLNet.Diffusion.Runtime;
using MLNet.Diffusion.Transforms;
using static MLNet.Diffusion.Tests.Transforms.TransformTestKit;

namespace MLNet.Diffusion.Tests.Transforms;

public class ThreadingAndDeviceTests(TransformModelFixture model) : IClassFixture<TransformModelFixture>
{
    [Fact]
    public async Task TwoThreadsThroughOneTransformerGetTheSerialImages()
    {
        var ml = new MLContext();
        var table = Table(ml, 6);
        using var transformer = ml.Transforms.GenerateImages(Options(model.Path, batchSize: 2)).Fit(table);
        var serial = ReadImages(transformer.Transform(table));
        using var start = new Barrier(2);
        var tasks = Enumerable.Range(0, 2).Select(_ => Task.Run(() =>
        {
            start.SignalAndWait();
            return ReadImages(transformer.Transform(table));
        })).ToArray();
        var results = await Task.WhenAll(tasks);
        Assert.Equal(serial, results[0]);
        Assert.Equal(serial, results[1]);
    }

    [Fact]
    public void GpuDeviceIdWithFallbackRunsOnTheCpuAndLogsWhyThroughMLContextLog()
    {
        var ml = new MLContext { GpuDeviceId = 0, FallbackToCpu = true };
        var messages = new List<LoggingEventArgs>();
        ml.Log += (_, e) => { lock (messages) messages.Add(e); };
        var table = Table(ml, 1);
        using var transformer = ml.Transforms.GenerateImages(Options(model.Path)).Fit(table);
        Assert.Equal(ExecutionDevice.Cpu, transformer.Pipeline.Device);
        Assert.Contains("CUDA device 0", transformer.Pipeline.FallbackReason);
        lock (messages)
            Assert.Contains(messages, m => m.Kind == ChannelMessageKind.Warning && m.Source.StartsWith("MLNet.Diffusion") && m.Message.Contains("CUDA") && m.Message.Contains("CPU"));
        Assert.Single(ReadImages(transformer.Transform(table)));
    }

    [Fact]
    public void GpuDeviceIdWithoutFallbackThrowsNamingCuda()
    {
        var ml = new MLContext { GpuDeviceId = 1, FallbackToCpu = false };
        var table = Table(ml, 1);
        var e = Assert.Throws<InvalidOperationException>(() => ml.Transforms.GenerateImages(Options(model.Path)).Fit(table));
        Assert.Contains("CUDA device 1", e.Message);
        Assert.Contains("FallbackToCpu", e.Message);
        // The options can override the context, as ApplyOnnxModel's gpuDeviceId/fallbackToCpu arguments do.
        var options = Options(model.Path);
        options.FallbackToCpu = true;
        using var fallback = new DiffusionEstimator(ml, options).Fit(table);
        Assert.Equal(ExecutionDevice.Cpu, fallback.Pipeline.Device);
        options.GpuDeviceId = null;
        Assert.Throws<InvalidOperationException>(() => new DiffusionEstimator(ml, Options(model.Path)).Fit(table));
    }

    [Fact]
    public void CatalogAndConstructorReadTheSameContextSettingsAndShareOneModel()
    {
        var ml = new MLContext { GpuDeviceId = 2, FallbackToCpu = false };
        var fromCatalog = DiffusionHost.From(ml.Transforms);
        var fromContext = DiffusionHost.From(ml);
        Assert.Equal(2, fromCatalog.GpuDeviceId);
        Assert.False(fromCatalog.FallbackToCpu);
        Assert.Equal(fromContext, fromCatalog);

        var cpu = new MLContext();
        var table = Table(cpu, 1);
        var options = Options(model.Path);
        var a = cpu.Transforms.GenerateImages(options).Fit(table);
        var b = new DiffusionEstimator(cpu, options).Fit(table);
        Assert.Same(a.Pipeline.UNet, b.Pipeline.UNet); // one loaded model behind both pipelines
        Assert.Equal(8, ModelLeases.LeaseCount(cpu, options)); // each composite: itself and its three stages
        a.Dispose();
        Assert.Equal(4, ModelLeases.LeaseCount(cpu, options));
        b.Dispose();
        Assert.Equal(0, ModelLeases.LeaseCount(cpu, options));
        Assert.Throws<ObjectDisposedException>(() => b.Pipeline);
    }

    [Fact]
    public void SpellingsOfOneFolderShareOneModel()
    {
        var ml = new MLContext();
        var table = Table(ml, 1);
        var plain = Options(model.Path);
        var trailing = Options(model.Path + Path.DirectorySeparatorChar);
        var relative = Options(Path.GetRelativePath(Environment.CurrentDirectory, model.Path));
        using var a = ml.Transforms.GenerateImages(plain).Fit(table);
        using var b = ml.Transforms.GenerateImages(trailing).Fit(table);
        using var c = ml.Transforms.GenerateImages(relative).Fit(table);
        Assert.Same(a.Pipeline.UNet, b.Pipeline.UNet); // one loaded model behind both pipelines
        Assert.Same(a.Pipeline.UNet, c.Pipeline.UNet);
        Assert.Equal(12, ModelLeases.LeaseCount(ml, trailing));
    }
}
