using Microsoft.ML;
using Microsoft.ML.Data;
using MLNet.Diffusion.Pipeline;
using MLNet.Diffusion.Transforms;
using static MLNet.Diffusion.Tests.Transforms.TransformTestKit;

namespace MLNet.Diffusion.Tests.Transforms;

/// <summary><see cref="DiffusionOptions.Progress"/> and <see cref="DiffusionOptions.CancellationToken"/> through the ML.NET transforms.</summary>
public class ProgressAndCancellationTests(TransformModelFixture model) : IClassFixture<TransformModelFixture>
{
    /// <summary>Collects reports on the reporting thread (System.Progress would post them elsewhere, later).</summary>
    private sealed class Recorder(Action<DiffusionBatchProgress>? onReport = null) : IProgress<DiffusionBatchProgress>
    {
        public List<DiffusionBatchProgress> Reports { get; } = [];

        public void Report(DiffusionBatchProgress value)
        {
            Reports.Add(value);
            onReport?.Invoke(value);
        }
    }

    [Fact]
    public void EachBatchReportsItsRowsAndEveryUNetCallAndDecodedImage()
    {
        var ml = new MLContext();
        var recorder = new Recorder();
        var options = Options(model.Path, batchSize: 2);
        options.Progress = recorder;
        using var transformer = ml.Transforms.GenerateImages(options).Fit(Table(ml, 5));
        Assert.Equal(5, ReadImages(transformer.Transform(Table(ml, 5))).Count);

        // Batches of rows 0–1, 2–3 and 4, in order; within each: encoding, 3 DDIM calls, one report per decoded image.
        Assert.Equal([(0L, 2), (2L, 2), (4L, 1)], recorder.Reports.Select(r => (r.FirstRow, r.Images)).Distinct());
        foreach (var (first, images) in new[] { (0L, 2), (2L, 2), (4L, 1) })
        {
            var stages = recorder.Reports.Where(r => r.FirstRow == first).Select(r => r.Stage).ToArray();
            Assert.Equal(DiffusionStage.EncodingText, stages[0].Stage);
            Assert.Equal([1, 2, 3], stages.Where(s => s.Stage == DiffusionStage.Denoising).Select(s => s.Step));
            Assert.All(stages.Where(s => s.Stage == DiffusionStage.Denoising), s => Assert.Equal(3, s.Total));
            Assert.Equal(Enumerable.Range(1, images), stages.Where(s => s.Stage == DiffusionStage.Decoding).Select(s => s.Step));
        }
    }

    [Fact]
    public void CancellingStopsAtTheNextUNetCallAndKeepsWhatWasRead()
    {
        var ml = new MLContext();
        using var cancel = new CancellationTokenSource();
        // Cancel while the second batch (rows 2–3) is at its second UNet call.
        var recorder = new Recorder(r => { if (r.FirstRow == 2 && r.Stage is { Stage: DiffusionStage.Denoising, Step: 2 }) cancel.Cancel(); });
        var options = Options(model.Path, batchSize: 2);
        options.Progress = recorder;
        options.CancellationToken = cancel.Token;
        using var transformer = ml.Transforms.GenerateImages(options).Fit(Table(ml, 6));
        long before = transformer.Pipeline.UNet.RunCount;
        var view = transformer.Transform(Table(ml, 6));

        var column = view.Schema["Image"];
        using var cursor = view.GetRowCursor([column]);
        var getter = cursor.GetGetter<MLImage>(column);
        var read = new List<byte[]>();
        MLImage image = null!;
        var thrown = Assert.ThrowsAny<OperationCanceledException>(() =>
        {
            while (cursor.MoveNext())
            {
                getter(ref image);
                read.Add(image.Pixels.ToArray());
            }
        });
        image?.Dispose();

        Assert.Equal(cancel.Token, thrown.CancellationToken);
        Assert.Equal(2, read.Count);                                            // rows 0 and 1, from the first batch
        Assert.Equal(3 + 2, transformer.Pipeline.UNet.RunCount - before);       // 3 calls for batch 1, then 2: no third
        Assert.DoesNotContain(recorder.Reports, r => r.FirstRow == 4);          // the third batch never started

        // The images read before the cancellation are the ones an uncancelled run gives.
        var clean = Options(model.Path, batchSize: 2);
        using var reference = new MLContext().Transforms.GenerateImages(clean).Fit(Table(ml, 6));
        Assert.Equal(ReadImages(reference.Transform(Table(ml, 2))), read);
    }

    [Fact]
    public void ALoadedModelTakesProgressAndCancellationThroughConfigure()
    {
        var ml = new MLContext();
        var file = Path.Combine(Path.GetTempPath(), $"mlnd-progress-{Guid.NewGuid():N}.zip");
        try
        {
            using (var fitted = ml.Transforms.GenerateImages(Options(model.Path, batchSize: 3)).Fit(Table(ml, 3)))
                DiffusionModelSaver.Save(ml, fitted, Table(ml, 3).Schema, file);
            Assert.DoesNotContain("CancellationToken", ReadManifest(file));

            var recorder = new Recorder();
            using var cancelled = new CancellationTokenSource();
            cancelled.Cancel();
            using var loaded = DiffusionModelSaver.Load(new MLContext(), file, out _, configure: o => o.Progress = recorder) as IDisposable;
            Assert.Equal(3, ReadImages(((ITransformer)loaded!).Transform(Table(ml, 3))).Count);
            Assert.Equal(3, recorder.Reports.Count(r => r.Stage.Stage == DiffusionStage.Denoising));

            using var stopped = DiffusionModelSaver.Load(new MLContext(), file, out _, configure: o => o.CancellationToken = cancelled.Token) as IDisposable;
            Assert.ThrowsAny<OperationCanceledException>(() => ReadImages(((ITransformer)stopped!).Transform(Table(ml, 3))));
        }
        finally
        {
            File.Delete(file);
        }
    }

    private static string ReadManifest(string file)
    {
        using var zip = System.IO.Compression.ZipFile.OpenRead(file);
        using var reader = new StreamReader(zip.GetEntry(DiffusionModelSaver.ManifestEntry)!.Open());
        return reader.ReadToEnd();
    }
}
