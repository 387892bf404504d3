using System.Text.RegularExpressions;
using Microsoft.ML;
using Microsoft.ML.Data;
using MLNet.Diffusion.Tests.Cli;
using MLNet.Diffusion.Tests.TestModels;
using MLNet.Diffusion.Tests.Transforms;
using static MLNet.Diffusion.Tests.Pipeline.PipelineTestHelpers;

namespace MLNet.Diffusion.Tests.Families;

/// <summary>
/// SD3 and FLUX.1 through the ML.NET transforms and the command line, on <see cref="FlowTestModelFactory"/>'s oracle
/// folders: the composite and the staged transforms carry the [77 + T, J] (SD3) or [T, J] (FLUX) conditioning and the 16
/// latent channels, and land on the same μ as the library; <c>info</c> names the family and <c>generate</c> takes
/// <c>--no-t5</c> and <c>--max-sequence-length</c>.
/// </summary>
public sealed class FlowSurfaceTests
{
    private const double Tolerance = 2e-3;

    private sealed class Row
    {
        public string Prompt { get; set; } = "";
    }

    private static readonly Row[] Rows = [new() { Prompt = "a red cube" }, new() { Prompt = "green grass under a grey sky" }];

    private static float[][] Column(IDataView view, string name) =>
        [.. view.GetColumn<VBuffer<float>>(name).Select(v => v.DenseValues().ToArray())];

    private static float[] Sd3Expected(string prompt, int t5Length, float guidance, FlowTestModelOptions o)
    {
        var (c, cp) = FlowTestModelFactory.Sd3ConditioningForPrompt(prompt, t5Length, true, o);
        var (u, up) = FlowTestModelFactory.Sd3ConditioningForPrompt("", t5Length, true, o);
        var mc = FlowTestModelFactory.TargetLatents(c, cp, 0, 12, 16, o);
        var mu = FlowTestModelFactory.TargetLatents(u, up, 0, 12, 16, o);
        var z = new float[mc.Length];
        for (int i = 0; i < z.Length; i++) z[i] = mu[i] + guidance * (mc[i] - mu[i]);
        return z;
    }

    [Fact]
    public void GenerateImagesOnAnSd3FolderCarriesTheJointConditioningAndSixteenChannels()
    {
        var o = new FlowTestModelOptions();
        using var folder = FlowTestModelFactory.CreateTemp(o);
        var ml = new MLContext();
        var table = ml.Data.LoadFromEnumerable(Rows);
        var options = new DiffusionOptions
        {
            ModelPath = folder.Path, Width = 128, Height = 96, Steps = 4, GuidanceScale = 3, BatchSize = 2, MaxSequenceLength = 32,
            LatentsColumnName = "Latents", PromptEmbeddingColumnName = "Embedding", IntraOpThreads = 1,
        };
        using var model = ml.Transforms.GenerateImages("Image", "Prompt", options).Fit(table);
        var output = model.Transform(table);
        Assert.Equal(new VectorDataViewType(NumberDataViewType.Single, 77 + 32, o.JointAttentionDim), output.Schema["Embedding"].Type);
        Assert.Equal(new VectorDataViewType(NumberDataViewType.Single, 16, 12, 16), output.Schema["Latents"].Type);
        var latents = Column(output, "Latents");
        for (int i = 0; i < Rows.Length; i++)
        {
            var expected = Sd3Expected(Rows[i].Prompt, 32, 3, o);
            Assert.True(MaxAbsDiff(latents[i], expected) < Tolerance, $"row {i}: max error {MaxAbsDiff(latents[i], expected)}");
        }
        Assert.Equal(2, TransformTestKit.ReadImages(output).Count);
    }

    [Fact]
    public void TheStagedTransformsGiveFluxTheSameLatentsAsTheComposite()
    {
        var o = new FlowTestModelOptions { Family = FlowTestFamily.FluxDev };
        using var folder = FlowTestModelFactory.CreateTemp(o);
        var ml = new MLContext();
        var table = ml.Data.LoadFromEnumerable(Rows);
        var options = new DiffusionOptions { ModelPath = folder.Path, Width = 128, Height = 96, Steps = 3, GuidanceScale = 3.5f, BatchSize = 2, MaxSequenceLength = 24, IntraOpThreads = 1 };
        using var staged = ml.Transforms.EncodePrompts(options).Append(ml.Transforms.DenoiseLatents(options)).Append(ml.Transforms.DecodeLatents(options)).Fit(table);
        var output = staged.Transform(table);
        Assert.Equal(new VectorDataViewType(NumberDataViewType.Single, 24, o.JointAttentionDim), output.Schema["PromptEmbedding"].Type);
        var latents = Column(output, "Latents");
        for (int i = 0; i < Rows.Length; i++)
        {
            var (embeds, pooled) = FlowTestModelFactory.FluxConditioningForPrompt(Rows[i].Prompt, 24, o);
            var expected = FlowTestModelFactory.TargetLatents(embeds, pooled, 3.5f, 12, 16, o);
            Assert.True(MaxAbsDiff(latents[i], expected) < Tolerance, $"row {i}: max error {MaxAbsDiff(latents[i], expected)}");
        }
        Assert.Equal(2, TransformTestKit.ReadImages(output).Count);
    }

    public static TheoryData<FlowTestFamily, string[]> InfoCases => new()
    {
        { FlowTestFamily.Sd3, ["Family  Stable Diffusion 3", "T5 encoder: text_encoder_3", "transformer input pooled_projections", "tokenizer_3", "shift factor 0.0609"] },
        { FlowTestFamily.FluxSchnell, ["Family  FLUX.1", "FLUX.1-schnell", "transformer input img_ids", "image token positions", "Default size 1024x1024"] },
        { FlowTestFamily.FluxDev, ["Family  FLUX.1", "FLUX.1-dev", "transformer input guidance", "distilled guidance scale"] },
    };

    [Theory]
    [MemberData(nameof(InfoCases))]
    public void InfoNamesTheFlowFamilyAndItsInputs(FlowTestFamily family, string[] expected)
    {
        using var folder = FlowTestModelFactory.CreateTemp(new FlowTestModelOptions { Family = family });
        var info = CliRun.Ok("info", "--model", folder.Path);
        var lines = Plain(info.Out).Split('\n').Select(l => string.Join(' ', l.Split(' ', StringSplitOptions.RemoveEmptyEntries))).ToArray();
        foreach (var text in expected)
            Assert.True(lines.Any(l => l.Contains(string.Join(' ', text.Split(' ', StringSplitOptions.RemoveEmptyEntries)), StringComparison.Ordinal)), $"'{text}' missing.\n{info.Out}");
    }

    [Fact]
    public void GenerateTakesNoT5AndMaxSequenceLengthAsTheLibraryDoes()
    {
        var o = new FlowTestModelOptions();
        using var folder = FlowTestModelFactory.CreateTemp(o);
        using var dir = new TempDir();
        CliRun.Ok("generate", "a red cube", "--model", folder.Path, "--out", dir["a"], "--steps", "3", "--size", "128x96", "-g", "3", "--seed", "5",
            "--max-sequence-length", "32");
        CliRun.Ok("generate", "a red cube", "--model", folder.Path, "--out", dir["b"], "--steps", "3", "--size", "128x96", "-g", "3", "--seed", "5", "--no-t5");
        using var pipeline = StableDiffusionPipeline.Load(folder.Path, new DiffusionRuntimeOptions { MaxSequenceLength = 32 });
        using var noT5 = StableDiffusionPipeline.Load(folder.Path, new DiffusionRuntimeOptions { WithoutT5 = true });
        var options = new GenerationOptions { Steps = 3, Width = 128, Height = 96, GuidanceScale = 3 };
        foreach (var (p, name) in new[] { (pipeline, "a"), (noT5, "b") })
        {
            using var image = p.Generate("a red cube", 5, options).Image;
            var cli = Directory.GetFiles(dir[name], "*.png").Single();
            using var written = MLImage.CreateFromFile(cli);
            Assert.Equal(image.GetBGRPixels.ToArray(), written.GetBGRPixels.ToArray());
        }
        var bad = CliRun.Run("generate", "x", "--model", folder.Path, "--out", dir["c"], "--max-sequence-length", "600");
        Assert.Equal(2, bad.ExitCode);
        Assert.Contains("--max-sequence-length must be from 1 to 512", bad.ToString());
    }

    private static string Plain(string text) => Regex.Replace(text, @"\x1b\[[0-9;]*m", "");
}
