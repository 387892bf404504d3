using Microsoft.ML;
using Microsoft.ML.Data;
using MLNet.Diffusion.Pipeline;
using MLNet.Diffusion.Transforms;
using static MLNet.Diffusion.Tests.Transforms.TransformTestKit;

namespace MLNet.Diffusion.Tests.Transforms;

public class LazinessAndBatchingTests(TransformModelFixture model) : IClassFixture<TransformModelFixture>
{
    private sealed class SeededRow
    {
        public string Prompt { get; set; } = "";
        public int Seed { get; set; }
        public int Steps { get; set; }
    }

    private sealed class UIntSeedRow
    {
        public string Prompt { get; set; } = "";
        public uint Seed { get; set; }
    }

    [Fact]
    public void ReadingOnlyPassThroughColumnsGeneratesNothing()
    {
        var ml = new MLContext();
        var table = Table(ml, 5);
        using var fitted = ml.Transforms.GenerateImages(Options(model.Path, batchSize: 2))
            .Append(ml.Transforms.ResizeImages("Small", 16, 16, "Image"))
            .Append(ml.Transforms.ExtractPixels("Pixels", "Small"))
            .Fit(table);
        var unet = fitted.OfType<DiffusionTransformer>().Single().Pipeline.UNet;
        long before = unet.RunCount;
        var output = fitted.Transform(table);

        Assert.Equal(Enumerable.Range(0, 5).Select(i => $"row{i}"), output.GetColumn<string>("Id"));
        Assert.Equal(Prompts.Take(5), output.GetColumn<string>("Prompt"));
        Assert.Equal(5, output.GetRowCount());
        Assert.Equal(before, unet.RunCount);

        // Reading the image column does generate: 3 batches (2 + 2 + 1) × 3 steps.
        Assert.Equal(5, ReadImages(output).Count);
        Assert.Equal(before + 9, unet.RunCount);
    }

    [Fact]
    public void EachBatchEncodesItsDistinctPromptsAndNegativePromptsInOneTextEncoderRun()
    {
        var ml = new MLContext();
        // Two prompts over four rows, one negative prompt for all: a batch of four encodes three texts, once.
        var rows = Enumerable.Range(0, 4).Select(i => new FullRow { Prompt = i % 2 == 0 ? "red cat" : "blue dog", Negative = "blurry", Seed = i }).ToArray();
        var table = ml.Data.LoadFromEnumerable(rows);
        var options = Options(model.Path, batchSize: 4);
        options.NegativePromptColumnName = nameof(FullRow.Negative);
        options.SeedColumnName = nameof(FullRow.Seed);
        using var transformer = ml.Transforms.GenerateImages(options).Fit(table);
        var encoder = transformer.Pipeline.TextEncoder;
        long runs = encoder.RunCount, encoded = encoder.EncodedPromptCount;
        var images = ReadImages(transformer.Transform(table));
        Assert.Equal(1, encoder.RunCount - runs);
        Assert.Equal(3, encoder.EncodedPromptCount - encoded);

        // Row 2 repeats row 0's prompt, negative prompt and settings but not its seed; generated alone it is the same image.
        var alone = transformer.Pipeline.Generate([new ImagePrompt("red cat", 2) { NegativePrompt = "blurry" }], Generation(options))[0];
        using (alone.Image) Assert.True(MaxByteDifference(alone.Image.Pixels.ToArray(), images[2]) <= 1);
    }

    [Fact]
    public void TenRowsInBatchesOfFourMakeThreeUNetBatchesPerStepAndMatchImagesGeneratedAlone()
    {
        var ml = new MLContext();
        var table = Table(ml, 10);
        var options = Options(model.Path, batchSize: 4);
        using var transformer = ml.Transforms.GenerateImages(options).Fit(table);
        var pipeline = transformer.Pipeline;
        long before = pipeline.UNet.RunCount;
        var images = ReadImages(transformer.Transform(table));
        Assert.Equal(10, images.Count);
        Assert.Equal(3 * options.Steps, pipeline.UNet.RunCount - before); // ⌈10/4⌉ batches per step

        for (int row = 0; row < 10; row++)
        {
            // Seed formula without a seed column: Seed + row · ImagesPerPrompt.
            using var alone = pipeline.Generate(Prompts[row], options.Seed + row, Generation(options)).Image;
            Assert.True(MaxByteDifference(alone.Pixels.ToArray(), images[row]) <= 1, $"row {row} differs from its image generated alone");
        }
        Assert.NotEqual(images[0], images[7]); // "a red cat" vs "cat"
    }

    [Fact]
    public void EachRowIsGeneratedOncePerPassAndEveryGetterCallHandsOutAFreshImage()
    {
        var ml = new MLContext();
        var table = Table(ml, 3);
        using var transformer = ml.Transforms.GenerateImages(Options(model.Path, batchSize: 3)).Fit(table);
        var output = transformer.Transform(table);
        long before = transformer.Pipeline.UNet.RunCount;
        using var cursor = output.GetRowCursor(output.Schema);
        var getter = cursor.GetGetter<MLImage>(output.Schema["Image"]);
        int rows = 0;
        while (cursor.MoveNext())
        {
            MLImage first = null!, second = null!;
            getter(ref first);
            getter(ref second);
            Assert.NotSame(first, second);
            Assert.Equal(first.Pixels.ToArray(), second.Pixels.ToArray());
            first.Dispose(); // a consumer disposing its image does not spoil the next call
            MLImage third = null!;
            getter(ref third);
            Assert.Equal(second.Pixels.ToArray(), third.Pixels.ToArray());
            second.Dispose();
            third.Dispose();
            rows++;
        }
        Assert.Equal(3, rows);
        Assert.Equal(3, transformer.Pipeline.UNet.RunCount - before); // one batch of 3, 3 steps
    }

    [Fact]
    public void SkippedRowsAreNotGenerated()
    {
        var ml = new MLContext();
        var table = Table(ml, 6);
        using var transformer = ml.Transforms.GenerateImages(Options(model.Path, batchSize: 1)).Fit(table);
        var output = transformer.Transform(table);
        long before = transformer.Pipeline.UNet.RunCount;
        using var cursor = output.GetRowCursor(output.Schema);
        var getter = cursor.GetGetter<MLImage>(output.Schema["Image"]);
        MLImage image = null!;
        while (cursor.MoveNext())
            if (cursor.Position % 3 == 0) getter(ref image); // rows 0 and 3
        image.Dispose();
        Assert.Equal(2 * 3, transformer.Pipeline.UNet.RunCount - before);
    }

    [Fact]
    public void RowsWithOtherStepsGoToTheirOwnUNetBatchAndSeedColumnsArePerRow()
    {
        var ml = new MLContext();
        var rows = new[]
        {
            new SeededRow { Prompt = "red cat", Seed = 5, Steps = 2 },
            new SeededRow { Prompt = "blue dog", Seed = -6, Steps = 0 }, // 0: the options' steps (3)
            new SeededRow { Prompt = "the horse", Seed = 7, Steps = 2 },
            new SeededRow { Prompt = "cat", Seed = 5, Steps = 3 },
        };
        var table = ml.Data.LoadFromEnumerable(rows);
        var options = Options(model.Path, batchSize: 4);
        options.SeedColumnName = "Seed";
        options.StepsColumnName = "Steps";
        using var transformer = ml.Transforms.GenerateImages(options).Fit(table);
        long before = transformer.Pipeline.UNet.RunCount;
        var images = ReadImages(transformer.Transform(table));
        // One window of 4 rows, split into a 2-step batch (rows 0, 2) and a 3-step batch (rows 1, 3).
        Assert.Equal(2 + 3, transformer.Pipeline.UNet.RunCount - before);
        for (int i = 0; i < rows.Length; i++)
        {
            var g = Generation(options);
            g.Steps = rows[i].Steps == 0 ? options.Steps : rows[i].Steps;
            using var alone = transformer.Pipeline.Generate(rows[i].Prompt, rows[i].Seed, g).Image;
            Assert.True(MaxByteDifference(alone.Pixels.ToArray(), images[i]) <= 1, $"row {i} differs from its image generated alone");
        }
    }

    [Fact]
    public void UInt32SeedsWorkAndAReRunGivesTheSameImages()
    {
        var ml = new MLContext();
        var table = ml.Data.LoadFromEnumerable(new[] { new UIntSeedRow { Prompt = "red cat", Seed = 4_000_000_000 }, new UIntSeedRow { Prompt = "red cat", Seed = 1 } });
        var options = Options(model.Path, batchSize: 2);
        options.SeedColumnName = "Seed";
        using var transformer = ml.Transforms.GenerateImages(options).Fit(table);
        var first = ReadImages(transformer.Transform(table));
        var second = ReadImages(transformer.Transform(table));
        Assert.Equal(first, second);
        Assert.NotEqual(first[0], first[1]); // same prompt, other seed
        using var alone = transformer.Pipeline.Generate("red cat", 4_000_000_000L, Generation(options)).Image;
        Assert.True(MaxByteDifference(alone.Pixels.ToArray(), first[0]) <= 1);
    }

    [Fact]
    public void SeveralImagesPerPromptGiveRowsWithAnImageIndexAndTheirOwnSeeds()
    {
        var ml = new MLContext();
        var table = Table(ml, 3);
        var options = Options(model.Path, batchSize: 4);
        options.ImagesPerPrompt = 2;
        using var transformer = ml.Transforms.GenerateImages(options).Fit(table);
        Assert.False(transformer.IsRowToRowMapper);
        var output = transformer.Transform(table);
        Assert.Equal(6, output.GetRowCount());
        Assert.Equal(new[] { 0, 1, 0, 1, 0, 1 }, output.GetColumn<int>("ImageIndex"));
        Assert.Equal(new[] { "row0", "row0", "row1", "row1", "row2", "row2" }, output.GetColumn<string>("Id"));
        long before = transformer.Pipeline.UNet.RunCount;
        var images = ReadImages(output);
        Assert.Equal(2 * options.Steps, transformer.Pipeline.UNet.RunCount - before); // 6 images in batches of 4
        for (int i = 0; i < 6; i++)
        {
            // Seed of image j of row r: Seed + r·ImagesPerPrompt + j.
            using var alone = transformer.Pipeline.Generate(Prompts[i / 2], options.Seed + i, Generation(options)).Image;
            Assert.True(MaxByteDifference(alone.Pixels.ToArray(), images[i]) <= 1, $"output row {i} differs");
        }
        Assert.Throws<InvalidOperationException>(() => transformer.GetRowToRowMapper(table.Schema));
    }

    [Fact]
    public void NegativePromptGuidanceAndInt64SeedColumnsArePerRow()
    {
        var ml = new MLContext();
        var rows = new[]
        {
            new FullRow { Prompt = "red cat", Negative = "blue dog", Seed = 1L << 40, Guidance = float.NaN }, // NaN: the options' scale (3)
            new FullRow { Prompt = "the horse", Negative = "cat", Seed = -2, Guidance = 1 },                 // guidance off: its own UNet call
            new FullRow { Prompt = "painting", Negative = "", Seed = 3, Guidance = 5 },
        };
        var table = ml.Data.LoadFromEnumerable(rows);
        var options = Options(model.Path, batchSize: 3);
        options.NegativePromptColumnName = "Negative";
        options.SeedColumnName = "Seed";
        options.GuidanceScaleColumnName = "Guidance";
        options.StepsColumnName = "Steps";
        using var transformer = ml.Transforms.GenerateImages(options).Fit(table);
        long before = transformer.Pipeline.UNet.RunCount;
        var images = ReadImages(transformer.Transform(table));
        Assert.Equal(2 * options.Steps, transformer.Pipeline.UNet.RunCount - before); // guided pair + unguided row
        for (int i = 0; i < rows.Length; i++)
        {
            var request = new ImagePrompt(rows[i].Prompt, rows[i].Seed) { NegativePrompt = rows[i].Negative, GuidanceScale = float.IsNaN(rows[i].Guidance) ? null : rows[i].Guidance };
            using var alone = transformer.Pipeline.Generate([request], Generation(options))[0].Image;
            Assert.True(MaxByteDifference(alone.Pixels.ToArray(), images[i]) <= 1, $"row {i} differs from its image generated alone");
        }
        Assert.NotEqual(images[0], images[2]);
    }

    [Fact]
    public void AnOutOfRangeStepsValueNamesTheRowAndColumnWhenItsImageIsRead()
    {
        var ml = new MLContext();
        var table = ml.Data.LoadFromEnumerable(new[] { new SeededRow { Prompt = "cat", Steps = 3 }, new SeededRow { Prompt = "dog", Steps = -5 } });
        var options = Options(model.Path);
        options.StepsColumnName = "Steps";
        using var transformer = ml.Transforms.GenerateImages(options).Fit(table);
        var output = transformer.Transform(table);
        Assert.Equal(2, output.GetColumn<string>("Prompt").Count()); // pass-through reads are fine
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => ReadImages(output));
        Assert.Contains("Data row 2", e.Message); // rows are counted from 1, as users count them
        Assert.Contains("'Steps' must be from 1 to 1000; got -5", e.Message);
    }
}
