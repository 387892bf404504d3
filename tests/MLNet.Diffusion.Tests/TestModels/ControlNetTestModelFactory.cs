using MLNet.Diffusion.ModelBuilder.Onnx;
using MLNet.Diffusion.Schedulers;

namespace MLNet.Diffusion.Tests.TestModels;

/// <summary>How the test models name their residual tensors.</summary>
public enum ResidualNaming
{
    /// <summary>OnnxStack's converter: <c>down_block_{i}_additional_residual</c>, <c>mid_block_additional_residual</c>.</summary>
    OnnxStack,

    /// <summary>diffusers' argument names: <c>down_block_additional_residuals.{i}</c>, <c>mid_block_res_sample</c>.</summary>
    Diffusers,

    /// <summary>Names that tell nothing (<c>residual_in_{i}</c>, <c>residual_out_{i}</c>): read by order and shape.</summary>
    Anonymous,
}

/// <summary>Where the ControlNet-ready test UNet sits in the model folder.</summary>
public enum ControlUNetPlace
{
    /// <summary>OnnxStack's layout: <c>controlnet/model.onnx</c> beside the plain <c>unet/</c>.</summary>
    Beside,

    /// <summary><c>unet/model.onnx</c> itself takes the residuals.</summary>
    InUnet,
}

/// <summary>The variations of the ControlNet contract that <see cref="ControlNetTestModelFactory"/> writes.</summary>
public sealed record ControlNetTestOptions
{
    /// <summary>
    /// The channels of each UNet level (SD 1.5's 320, 640, 1280, 1280, scaled down): four levels give SD 1.x/2.x's 12 down
    /// residuals, three SDXL's 9.
    /// </summary>
    public int[] LevelChannels { get; init; } = [4, 8, 16, 16];

    /// <summary>Whether the ControlNet declares <c>conditioning_scale</c> (some exports omit it: the engine scales on the host).</summary>
    public bool ScaleInput { get; init; } = true;

    /// <summary>The element type of <c>conditioning_scale</c>: Double (OnnxStack: a Python float traced as a rank-0 double) or Float.</summary>
    public OnnxElementType ScaleType { get; init; } = OnnxElementType.Double;

    /// <summary>Rank 0 (OnnxStack) or [1].</summary>
    public bool ScaleRankZero { get; init; } = true;

    /// <summary>How the residual tensors are named (on both models).</summary>
    public ResidualNaming Naming { get; init; } = ResidualNaming.OnnxStack;

    /// <summary>SDXL's extra inputs (<c>text_embeds</c> [batch, <see cref="PooledWidth"/>], <c>time_ids</c> [batch, 6]) on the ControlNet.</summary>
    public bool Xl { get; init; }

    /// <summary>The pooled embedding width of <see cref="Xl"/> ControlNets.</summary>
    public int PooledWidth { get; init; } = 16;
}

/// <summary>
/// A ControlNet and a ControlNet-ready UNet with the real contract (OnnxStack's names, the residual count, channel
/// pattern and resolution factors of SD 1.x/2.x or SDXL, at small channel counts) whose effect has a closed form.
/// </summary>
/// <remarks>
/// <para><b>ControlNet</b>: every element of residual i is aᵢ·s·mean(<c>controlnet_cond</c> of its row), with aᵢ = i + 1
/// for down residual i and a = n + 1 for the mid one (n down residuals), s the <c>conditioning_scale</c> (1 when the
/// export has none). Residual i has <see cref="ResidualChannels"/> channels at ⌈h/2^⌊i/3⌋⌉ × ⌈w/2^⌊i/3⌋⌉ (the mid one at
/// the last down residual's size), so a wrongly sized output buffer fails the run. It reads <c>sample</c>,
/// <c>timestep</c>, <c>encoder_hidden_states</c> (and SDXL's extras) times 0, so a view of the wrong batch fails too.</para>
/// <para><b>UNet</b>: the oracle of <see cref="TestModelFactory"/> with its target moved by
/// δ = Σᵢ mean(residualᵢ)/((n + 1)·aᵢ) per row. With the ControlNet above, δ = s·mean(control image): each residual
/// contributes its share only when it reaches the right input, and a scheduler that ends at the target ends at
/// z(c) + δ (<see cref="Shift"/>). With guidance g the shifts of the two halves combine as the targets do:
/// z_u + δ_u + g·(z_c + δ_c − z_u − δ_u).</para>
/// </remarks>
public static partial class ControlNetTestModelFactory
{
    /// <summary>The number of down residuals of a UNet with <paramref name="levels"/> levels: 3 per level (12 or 9).</summary>
    public static int DownCount(int levels) => 3 * levels;

    /// <summary>The channels of residual <paramref name="index"/> (the mid one is <see cref="DownCount"/>): conv_in and
    /// each level's two resnets have that level's channels, a downsampler keeps the level before's.</summary>
    public static int ResidualChannels(int[] levelChannels, int index)
    {
        int downs = DownCount(levelChannels.Length);
        if (index >= downs) return levelChannels[^1];
        int level = index / 3;
        return index == 0 ? levelChannels[0] : index % 3 == 0 ? levelChannels[level - 1] : levelChannels[level];
    }

    /// <summary>The factor aᵢ of residual <paramref name="index"/> (the mid one is index n).</summary>
    public static float Weight(int index) => index + 1;

    /// <summary>The resolution factor of residual <paramref name="index"/> of <paramref name="downs"/>.</summary>
    public static int Factor(int index, int downs) => 1 << (Math.Min(index, downs - 1) / 3);

    /// <summary>The shift δ of one row's target: <paramref name="scale"/> × the mean of its control image values (0 to 1).</summary>
    public static float Shift(ReadOnlySpan<float> controlImage, float scale)
    {
        double sum = 0;
        foreach (var v in controlImage) sum += v;
        return (float)(scale * sum / controlImage.Length);
    }

    /// <summary>
    /// The factor guess mode puts on δ: the mean over residuals of diffusers' ramp, (Σᵢ 10^(−1 + i/n) + 1)/(n + 1), since
    /// each residual contributes an equal share of δ.
    /// </summary>
    public static double GuessFactor(int downs)
    {
        double sum = 1; // the mid residual's factor
        for (int i = 0; i < downs; i++) sum += Math.Pow(10, -1 + (double)i / downs);
        return sum / (downs + 1);
    }

    /// <summary>The name of residual <paramref name="index"/> of <paramref name="downs"/> on the UNet (input) or ControlNet (output) side.</summary>
    public static string Name(ResidualNaming naming, int index, int downs, bool input) => naming switch
    {
        ResidualNaming.OnnxStack => index == downs ? "mid_block_additional_residual" : $"down_block_{index}_additional_residual",
        ResidualNaming.Diffusers => index == downs ? "mid_block_res_sample" : $"down_block_additional_residuals.{index}",
        _ => $"residual_{(input ? "in" : "out")}_{index}",
    };

    /// <summary>Writes the ControlNet's <c>model.onnx</c> into <paramref name="directory"/> (OnnxStack's layout) and returns the folder.</summary>
    /// <param name="directory">The ControlNet folder.</param>
    /// <param name="model">The model's options (embedding width, float16, timestep form).</param>
    /// <param name="o">The ControlNet's contract variations.</param>
    public static string CreateControlNet(string directory, TestModelOptions? model = null, ControlNetTestOptions? o = null)
    {
        model ??= new TestModelOptions();
        o ??= new ControlNetTestOptions();
        var full = Path.GetFullPath(directory);
        Directory.CreateDirectory(full);
        ControlNetGraph(model, o).Save(Path.Combine(full, "model.onnx"));
        return full;
    }

    /// <summary>
    /// Writes a test model folder (<see cref="TestModelFactory.Create"/>) with a ControlNet-ready UNet: at
    /// <c>controlnet/model.onnx</c> beside the plain UNet, or as <c>unet/model.onnx</c> itself.
    /// </summary>
    public static string CreateModel(string directory, TestModelOptions? model = null, ControlUNetPlace place = ControlUNetPlace.Beside, ControlNetTestOptions? o = null)
    {
        model ??= new TestModelOptions();
        o ??= new ControlNetTestOptions();
        string root = TestModelFactory.Create(directory, model);
        var scheduler = SchedulerConfig.Load(Path.Combine(root, "scheduler", "scheduler_config.json"));
        var graph = TestModelGraphs.Unet(model, TestModelFactory.AlphasCumprod(scheduler), (g, target) => AddResidualShift(g, target, model, o));
        string folder = place == ControlUNetPlace.Beside ? "controlnet" : "unet";
        foreach (var file in Directory.Exists(Path.Combine(root, folder)) ? Directory.GetFiles(Path.Combine(root, folder), "*.onnx*") : []) File.Delete(file);
        graph.Save(Path.Combine(root, folder, "model.onnx"));
        return root;
    }

    private static OnnxElementType FloatType(TestModelOptions o) => o.Fp16 ? OnnxElementType.Float16 : OnnxElementType.Float;

    private static string In(OnnxGraphBuilder g, string x, TestModelOptions o) => o.Fp16 ? g.Cast(x, OnnxElementType.Float) : x;

    /// <summary>The UNet's residual inputs and the target shift δ = Σᵢ mean(rᵢ)/((n + 1)·aᵢ) per row.</summary>
    private static string AddResidualShift(OnnxGraphBuilder g, string target, TestModelOptions model, ControlNetTestOptions o)
    {
        int downs = DownCount(o.LevelChannels.Length);
        string? shift = null;
        for (int i = 0; i <= downs; i++)
        {
            var r = In(g, g.Input(Name(o.Naming, i, downs, input: true), FloatType(model), "batch", ResidualChannels(o.LevelChannels, i), $"rh{i}", $"rw{i}"), model);
            var term = g.Mul(g.ReduceMean(r, [1, 2, 3], keepDims: true), g.Scalar(1f / ((downs + 1) * Weight(i))));
            shift = shift is null ? term : g.Add(shift, term);
        }
        return g.Add(target, shift!);
    }

    private static OnnxGraphBuilder ControlNetGraph(TestModelOptions model, ControlNetTestOptions o)
    {
        int downs = DownCount(o.LevelChannels.Length);
        var g = new OnnxGraphBuilder("oracle_controlnet");
        var sample = In(g, g.Input("sample", FloatType(model), "batch", 4, "height", "width"), model);
        var timestep = TestModelGraphs.TimestepInput(g, model.Timestep, model.Fp16, "batch");
        var hidden = In(g, g.Input("encoder_hidden_states", FloatType(model), "batch", "sequence", model.EmbeddingWidth), model);
        var cond = In(g, g.Input("controlnet_cond", FloatType(model), "batch", 3, "image_height", "image_width"), model);
        // m = mean(cond) per row [B, 1, 1, 1], plus 0 × each other input, so that a batch mismatch fails the run.
        var m = g.ReduceMean(cond, [1, 2, 3], keepDims: true);
        m = g.Add(m, g.Mul(g.Reshape(timestep, -1, 1, 1, 1), g.Scalar(0f)));
        m = g.Add(m, g.Mul(g.Reshape(g.ReduceMean(hidden, [1, 2], keepDims: true), -1, 1, 1, 1), g.Scalar(0f)));
        if (o.Xl)
        {
            var textEmbeds = In(g, g.Input("text_embeds", FloatType(model), "batch", o.PooledWidth), model);
            var timeIds = In(g, g.Input("time_ids", FloatType(model), "batch", 6), model);
            m = g.Add(m, g.Mul(g.Reshape(g.ReduceMean(textEmbeds, [1], keepDims: true), -1, 1, 1, 1), g.Scalar(0f)));
            m = g.Add(m, g.Mul(g.Reshape(g.ReduceMean(timeIds, [1], keepDims: true), -1, 1, 1, 1), g.Scalar(0f)));
        }
        if (o.ScaleInput)
        {
            var scale = o.ScaleRankZero ? g.Input("conditioning_scale", o.ScaleType) : g.Input("conditioning_scale", o.ScaleType, 1);
            m = g.Mul(m, o.ScaleType == OnnxElementType.Float ? scale : g.Cast(scale, OnnxElementType.Float));
        }
        var plane = g.Mul(g.Slice(sample, [0], [1], [1]), g.Scalar(0f)); // [B, 1, h, w] zeros
        for (int i = 0; i <= downs; i++)
        {
            int factor = Factor(i, downs);
            var grid = factor == 1 ? plane
                : g.Node("AveragePool", [plane], ("kernel_shape", new long[] { 1, 1 }), ("strides", new long[] { factor, factor }));
            var value = g.Add(grid, g.Mul(m, g.Scalar(Weight(i))));
            int channels = ResidualChannels(o.LevelChannels, i);
            var residual = g.Node("Expand", [value, g.Longs(1, channels, 1, 1)]);
            string name = Name(o.Naming, i, downs, input: false);
            if (model.Fp16) g.NodeNamed("Cast", [residual], name, ("to", (long)OnnxElementType.Float16));
            else g.Identity(residual, name);
            g.Output(name, FloatType(model), "batch", channels, $"h{i}", $"w{i}");
        }
        return g;
    }
}
