using System.Diagnostics;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using MLNet.Diffusion.Denoising;
using MLNet.Diffusion.Models;
using MLNet.Diffusion.Runtime;

namespace MLNet.Diffusion.Control;

/// <summary>
/// A ControlNet (<c>DIR/model.onnx</c>, OnnxStack's layout, or <c>DIR/controlnet/model.onnx</c>): it takes the UNet's
/// <c>sample</c>, <c>timestep</c> and <c>encoder_hidden_states</c>, the control image <c>controlnet_cond</c> [B, 3, H, W]
/// (0 to 1, at the generation size), optionally <c>conditioning_scale</c> (a rank-0 double in OnnxStack's export, or [1];
/// some exports omit it and the residuals are scaled on the host) and, for SDXL, <c>text_embeds</c> and <c>time_ids</c>;
/// it returns the residuals a ControlNet-ready UNet adds to its skip connections (<see cref="ControlResiduals"/>).
/// Element types are read from the model's metadata (float16 exports too).
/// </summary>
internal sealed class ControlNet : OnnxModelComponent
{
    private long _calls, _runTicks;

    /// <summary>The name of the control-image input.</summary>
    public const string CondInput = "controlnet_cond";

    /// <summary>The name of the scale input.</summary>
    public const string ScaleInput = "conditioning_scale";

    /// <summary>Loads the ControlNet and checks its contract.</summary>
    /// <param name="modelPath">The model file (see <see cref="ResolveModelPath"/>).</param>
    /// <param name="sessions">Creates the session.</param>
    /// <exception cref="InvalidDataException">An input or output is missing, of another type or rank, or cannot be identified; the message names it.</exception>
    public ControlNet(string modelPath, OnnxSessionFactory sessions) : base("controlnet", modelPath, sessions)
    {
        try
        {
            SampleSpec = Require(true, "sample", [TensorElementType.Float, TensorElementType.Float16], 4);
            TimestepSpec = Require(true, "timestep", [TensorElementType.Float, TensorElementType.Float16, TensorElementType.Int64, TensorElementType.Int32], 0, 1);
            HiddenStatesSpec = Require(true, "encoder_hidden_states", [TensorElementType.Float, TensorElementType.Float16], 3);
            CondSpec = Require(true, CondInput, [TensorElementType.Float, TensorElementType.Float16], 4);
            if (CondSpec.Dimensions[1] > 0 && CondSpec.Dimensions[1] != 3)
                throw new InvalidDataException($"The controlnet model '{modelPath}': {CondSpec} has {CondSpec.Dimensions[1]} channels, expected 3 (an RGB control image).");
            if (Inputs.TryGetValue(ScaleInput, out var scale))
                ScaleSpec = Require(true, ScaleInput, [TensorElementType.Double, TensorElementType.Float], 0, 1);
            Extras = UNetExtraInputs.Identify(Inputs, modelPath, null, "controlnet", [CondInput, ScaleInput]);
            Residuals = ControlResiduals.Identify([.. Outputs.Values], "controlnet", modelPath, "output");
            if (Residuals.Count == 0)
                throw new InvalidDataException($"The controlnet model '{modelPath}' has no residual outputs (it declares {string.Join(", ", Outputs.Values)}); expected {ControlResiduals.MidName} and the down-block residuals.");
            UseIoBinding = sessions!.Options.UseIoBinding;
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>
    /// The model file of a ControlNet folder: <c>DIR/model.onnx</c> (OnnxStack) or <c>DIR/controlnet/model.onnx</c> (a
    /// diffusers-like folder), or <paramref name="directory"/> itself when it names an .onnx file; checked as a model
    /// folder's components are (no link or external data leads outside the folder, no file is truncated).
    /// </summary>
    /// <exception cref="DirectoryNotFoundException">The folder does not exist.</exception>
    /// <exception cref="FileNotFoundException">Neither file exists.</exception>
    public static string ResolveModelPath(string directory)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        string full = Path.GetFullPath(directory);
        string root, file;
        if (File.Exists(full) && full.EndsWith(".onnx", StringComparison.OrdinalIgnoreCase))
        {
            root = Path.GetDirectoryName(full)!;
            file = full;
        }
        else
        {
            if (!Directory.Exists(full))
                throw new DirectoryNotFoundException($"ControlNet folder '{full}' does not exist. Pass a ControlNet folder holding model.onnx (OnnxStack's layout) or controlnet/model.onnx.");
            root = full;
            file = Path.Combine(full, "model.onnx");
            if (!File.Exists(file)) file = Path.Combine(full, "controlnet", "model.onnx");
            if (!File.Exists(file))
                throw new FileNotFoundException($"ControlNet folder '{full}' has neither model.onnx (OnnxStack's layout) nor controlnet/model.onnx. Export the ControlNet to ONNX first.", Path.Combine(full, "model.onnx"));
        }
        ModelFolderValidator.CheckOnnx(file, "controlnet", new ModelFolderPaths(root));
        return file;
    }

    /// <summary>The <c>sample</c> input.</summary>
    public TensorSpec SampleSpec { get; }

    /// <summary>The <c>timestep</c> input.</summary>
    public TensorSpec TimestepSpec { get; }

    /// <summary>The <c>encoder_hidden_states</c> input.</summary>
    public TensorSpec HiddenStatesSpec { get; }

    /// <summary>The <c>controlnet_cond</c> input.</summary>
    public TensorSpec CondSpec { get; }

    /// <summary>The <c>conditioning_scale</c> input, or null when the export omits it (the residuals are then scaled on the host).</summary>
    public TensorSpec? ScaleSpec { get; }

    /// <summary>The extra inputs (SDXL's <c>text_embeds</c> and <c>time_ids</c>), identified as the UNet's are.</summary>
    public IReadOnlyList<UNetExtraInput> Extras { get; }

    /// <summary>The residual outputs, down residuals first.</summary>
    public IReadOnlyList<ControlResidual> Residuals { get; }

    /// <summary>Whether bindings run through an <see cref="OrtIoBinding"/> (else <c>Run</c> with arrays of values).</summary>
    public bool UseIoBinding { get; }

    /// <summary>How many times the ControlNet has run since it was loaded.</summary>
    public long RunCount => Interlocked.Read(ref _calls);

    /// <summary>The wall-clock time spent inside ONNX Runtime's run call, summed over all runs (the benchmarks' overhead split).</summary>
    public TimeSpan RunTime => TimeSpan.FromSeconds((double)Interlocked.Read(ref _runTicks) / Stopwatch.Frequency);

    /// <summary>
    /// Checks that this ControlNet can drive <paramref name="unet"/>: its residuals match the UNet's residual inputs, and
    /// the inputs it shares with the UNet (sample, timestep, text embeddings, SDXL's extras) have the UNet's element types,
    /// since they are the same buffers.
    /// </summary>
    /// <exception cref="InvalidDataException">The first mismatch, named.</exception>
    public void CheckFits(UNet unet)
    {
        ControlResiduals.CheckMatch(Residuals, ModelPath, unet.Residuals, unet.ModelPath);
        void Same(TensorSpec mine, TensorSpec theirs)
        {
            if (mine.ElementType != theirs.ElementType)
                throw new InvalidDataException($"The ControlNet '{ModelPath}' takes {mine} where the ControlNet-ready UNet '{unet.ModelPath}' takes {theirs}: " +
                    "the two read the same buffer, so export both at the same precision.");
        }
        Same(SampleSpec, unet.SampleSpec);
        Same(HiddenStatesSpec, unet.HiddenStatesSpec);
        Same(TimestepSpec, unet.TimestepSpec);
        if (TimestepSpec.Rank != unet.TimestepSpec.Rank)
            throw new InvalidDataException($"The ControlNet '{ModelPath}' takes {TimestepSpec} where the ControlNet-ready UNet '{unet.ModelPath}' takes {unet.TimestepSpec}: re-export one of them so that both take the same timestep form.");
        foreach (var extra in Extras)
        {
            var theirs = unet.Extras.FirstOrDefault(e => e.Kind == extra.Kind)
                ?? throw new InvalidDataException($"The ControlNet '{ModelPath}' takes {extra.Spec}, which the UNet '{unet.ModelPath}' does not: an SDXL ControlNet needs an SDXL model.");
            Same(extra.Spec, theirs.Spec);
        }
        if (unet.Extras.Any(e => e.Kind is UNetExtraKind.TextEmbeds) && !Extras.Any(e => e.Kind is UNetExtraKind.TextEmbeds))
            throw new InvalidDataException($"The UNet '{unet.ModelPath}' is an SDXL UNet and the ControlNet '{ModelPath}' takes no text_embeds and time_ids: it is an SD 1.x/2.x ControlNet. Use an SDXL ControlNet.");
    }

    internal void RunBound(RunOptions options, OrtIoBinding binding)
    {
        long start = Stopwatch.GetTimestamp();
        Run(options, binding);
        Account(start);
    }

    internal void RunBound(RunOptions options, string[] inputNames, OrtValue[] inputs, string[] outputNames, OrtValue[] outputs)
    {
        long start = Stopwatch.GetTimestamp();
        Run(options, inputNames, inputs, outputNames, outputs);
        Account(start);
    }

    private void Account(long start)
    {
        Interlocked.Add(ref _runTicks, Stopwatch.GetTimestamp() - start);
        Interlocked.Increment(ref _calls);
    }

    /// <summary>A new IO binding on the session.</summary>
    internal OrtIoBinding CreateIoBinding()
    {
        ThrowIfDisposed();
        return Session.CreateIoBinding();
    }
}
