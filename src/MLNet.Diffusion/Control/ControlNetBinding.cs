using System.Numerics.Tensors;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using MLNet.Diffusion.Denoising;
using MLNet.Diffusion.Runtime;

namespace MLNet.Diffusion.Control;

/// <summary>
/// One ControlNet's inputs and outputs for one UNet binding, made once per batch and reused at every step. The ControlNet
/// reads the UNet binding's own buffers (the latent model input, timestep, text embeddings and SDXL's extras: the same
/// values the UNet reads, so nothing is copied), or views of their conditional half in guess mode; it owns only its
/// control image and scale. Its residuals go straight into the UNet's residual buffers (<see cref="IntoUNet"/>: the
/// ControlNet's outputs are bound to them), or into buffers of its own that <see cref="AddInto"/> sums into the UNet's
/// with a span add (a second and later ControlNet). After the first step nothing is allocated.
/// </summary>
/// <remarks>
/// On the CPU a step copies nothing. On CUDA the residual buffers are host memory that ONNX Runtime copies to and from the
/// device around each run (counted by the UNet's copy counters for the UNet's side).
/// </remarks>
internal sealed class ControlNetBinding : IDisposable
{
    private readonly ControlNet _net;
    private readonly UNetBinding _unet;
    private readonly OrtTensor _cond;
    private readonly OrtTensor[] _own;               // own residual outputs (not IntoUNet), else empty
    private readonly List<OrtValue> _views = [];     // views over the UNet binding's buffers, disposed with this binding
    private readonly OrtValue? _scaleValue;
    private readonly double[]? _scaleDouble;
    private readonly float[]? _scaleFloat;
    private readonly string[] _inputNames, _outputNames;
    private readonly OrtValue[] _inputs, _outputs;
    private readonly OrtIoBinding? _io;
    private readonly bool _rebindEachRun;
    private readonly int _residualOffsetRows;        // the UNet rows the outputs start at (guess mode: the conditional half)

    /// <param name="net">The ControlNet.</param>
    /// <param name="unet">The UNet binding it feeds.</param>
    /// <param name="conditionalOnly">Guess mode with classifier-free guidance: the ControlNet runs on the conditional half of
    /// the UNet batch only (its second half), and the unconditional half's residuals stay zero (diffusers' <c>guess_mode</c>).</param>
    /// <param name="intoUNet">Bind the outputs to the UNet's residual buffers (the first ControlNet of a step), rather than to
    /// buffers of its own.</param>
    public ControlNetBinding(ControlNet net, UNetBinding unet, bool conditionalOnly, bool intoUNet)
    {
        _net = net;
        _unet = unet;
        IntoUNet = intoUNet;
        Batch = conditionalOnly ? unet.Batch / 2 : unet.Batch;
        _residualOffsetRows = conditionalOnly ? unet.Batch - Batch : 0;
        var unetModel = unet.Shape;
        int h = unetModel.Height, w = unetModel.Width;
        var residualShapes = new long[unet.ResidualCount][];
        try
        {
            var names = new List<string> { "sample", "timestep", "encoder_hidden_states" };
            var values = new List<OrtValue> { Part(unet.SampleTensor), unet.TimestepTensor.Shape.Length == 0 ? unet.TimestepTensor.Value : Part(unet.TimestepTensor), Part(unet.HiddenStatesTensor) };
            foreach (var extra in net.Extras)
            {
                int index = IndexOfKind(unet, extra.Kind);
                names.Add(extra.Spec.Name);
                values.Add(Part(unet.ExtraTensor(index)));
            }
            _cond = OrtTensor.Create(net.CondSpec.ElementType, Batch, 3, h * UNet.PixelsPerLatent, w * UNet.PixelsPerLatent);
            names.Add(ControlNet.CondInput);
            values.Add(_cond.Value);
            if (net.ScaleSpec is { } scaleSpec)
            {
                long[] shape = scaleSpec.Rank == 0 ? [] : [1];
                _scaleValue = scaleSpec.ElementType == TensorElementType.Double
                    ? OrtValue.CreateTensorValueFromMemory(_scaleDouble = [1.0], shape)
                    : OrtValue.CreateTensorValueFromMemory(_scaleFloat = [1f], shape);
                names.Add(ControlNet.ScaleInput);
                values.Add(_scaleValue);
            }
            _inputNames = [.. names];
            _inputs = [.. values];

            _outputNames = [.. net.Residuals.Select(r => r.Spec.Name)];
            _outputs = new OrtValue[_outputNames.Length];
            _own = intoUNet ? [] : new OrtTensor[_outputNames.Length];
            for (int i = 0; i < _outputs.Length; i++)
            {
                var target = unet.Residual(i);
                long[] shape = [Batch, .. target.Shape[1..]];
                residualShapes[i] = shape;
                if (intoUNet) _outputs[i] = Part(target);
                else _outputs[i] = (_own[i] = OrtTensor.Create(target.ElementType, shape)).Value;
            }
            if (net.UseIoBinding)
            {
                _io = net.CreateIoBinding();
                for (int i = 0; i < _inputs.Length; i++) _io.BindInput(_inputNames[i], _inputs[i]);
                for (int i = 0; i < _outputs.Length; i++) _io.BindOutput(_outputNames[i], _outputs[i]);
                _rebindEachRun = net.Device != ExecutionDevice.Cpu;
            }
        }
        catch
        {
            Dispose();
            throw;
        }

        // The UNet binding's buffer itself, or a view of its conditional half.
        OrtValue Part(OrtTensor tensor)
        {
            if (_residualOffsetRows == 0) return tensor.Value;
            long rows = tensor.Shape[0];
            int perRow = (int)(tensor.Length / rows);
            var view = tensor.View(_residualOffsetRows * perRow, [Batch, .. tensor.Shape[1..]]);
            _views.Add(view);
            return view;
        }
    }

    private static int IndexOfKind(UNetBinding unet, UNetExtraKind kind)
    {
        var extras = unet.Extras;
        for (int i = 0; i < extras.Count; i++) if (extras[i].Kind == kind) return i;
        throw new InvalidOperationException($"The UNet has no {kind} input for the ControlNet.");
    }

    /// <summary>The ControlNet's batch: the UNet's, or its conditional half in guess mode.</summary>
    public int Batch { get; }

    /// <summary>Whether the outputs are the UNet's residual buffers themselves.</summary>
    public bool IntoUNet { get; }

    /// <summary>Values of one control-image row: 3·H·W.</summary>
    public int CondRowLength => _cond.Length / Batch;

    /// <summary>Writes one row of <c>controlnet_cond</c> (3·H·W values, 0 to 1, RGB planes); once per batch.</summary>
    public void WriteCond(ReadOnlySpan<float> image, int row)
    {
        if (image.Length != CondRowLength)
            throw new ArgumentException($"A control image row has {CondRowLength} values (3 × {_cond.Shape[2]} × {_cond.Shape[3]}), got {image.Length}.", nameof(image));
        _cond.Write(image, row * CondRowLength);
        if (_rebindEachRun) _io!.BindInput(ControlNet.CondInput, _cond.Value);
    }

    /// <summary>
    /// Runs the ControlNet at the UNet binding's current input (written by the step before) with
    /// <paramref name="scale"/> (the model's <c>conditioning_scale</c>, or a host multiply when it has none).
    /// </summary>
    public void Run(float scale, RunOptions runOptions)
    {
        if (_scaleDouble is not null) _scaleDouble[0] = scale;
        if (_scaleFloat is not null) _scaleFloat[0] = scale;
        if (_io is not null)
        {
            if (_rebindEachRun)
            {
                // Host buffers on a device session: ONNX Runtime copies an input when it is bound.
                _io.BindInput(_inputNames[0], _inputs[0]);
                _io.BindInput(_inputNames[1], _inputs[1]);
                if (_scaleValue is not null) _io.BindInput(ControlNet.ScaleInput, _scaleValue);
            }
            _net.RunBound(runOptions, _io);
        }
        else
        {
            _net.RunBound(runOptions, _inputNames, _inputs, _outputNames, _outputs);
        }
        if (IntoUNet) _unet.ResidualsWritten();
        if (_net.ScaleSpec is null && scale != 1f)
            for (int i = 0; i < _outputs.Length; i++) Scale(Output(i), scale);
    }

    /// <summary>
    /// Adds this ControlNet's residuals into the UNet's residual buffers (their conditional half in guess mode), or copies
    /// them there when <paramref name="copy"/> (no ControlNet has written them this step). A span add per residual.
    /// </summary>
    public void AddInto(bool copy)
    {
        if (IntoUNet) throw new InvalidOperationException("This ControlNet writes into the UNet's buffers itself.");
        for (int i = 0; i < _own.Length; i++)
        {
            var target = _unet.Residual(i);
            int perRow = target.Length / (int)target.Shape[0], offset = _residualOffsetRows * perRow, length = Batch * perRow;
            if (target.ElementType == TensorElementType.Float)
            {
                var destination = target.Floats.Slice(offset, length);
                if (copy) _own[i].Floats.CopyTo(destination);
                else TensorPrimitives.Add(destination, _own[i].Floats, destination);
            }
            else
            {
                var destination = target.Halves.Slice(offset, length);
                if (copy) _own[i].Halves.CopyTo(destination);
                else TensorPrimitives.Add<Half>(destination, _own[i].Halves, destination);
            }
        }
        _unet.ResidualsWritten();
    }

    /// <summary>The output tensor <paramref name="index"/> as the residual buffer region it is.</summary>
    private (OrtTensor Tensor, int Offset, int Length) Output(int index)
    {
        if (!IntoUNet) return (_own[index], 0, _own[index].Length);
        var target = _unet.Residual(index);
        int perRow = target.Length / (int)target.Shape[0];
        return (target, _residualOffsetRows * perRow, Batch * perRow);
    }

    private static void Scale((OrtTensor Tensor, int Offset, int Length) region, float scale)
    {
        var (tensor, offset, length) = region;
        if (tensor.ElementType == TensorElementType.Float)
        {
            var values = tensor.Floats.Slice(offset, length);
            TensorPrimitives.Multiply(values, scale, values);
        }
        else
        {
            var values = tensor.Halves.Slice(offset, length);
            TensorPrimitives.Multiply(values, (Half)scale, values);
        }
    }

    /// <summary>
    /// Multiplies the UNet's residual buffers by diffusers' guess-mode ramp: down residual i by 10^(−1 + i/n) (n down
    /// residuals; <c>torch.logspace(-1, 0, n + 1)</c>) and the mid residual by 1 (<c>ControlNetModel.forward</c> with
    /// <c>guess_mode</c>). An export traced without guess mode lacks the ramp, so it is applied here, once per step
    /// after every ControlNet has run (the ramp is linear, so ramping the sum is ramping each). Only rows from
    /// <paramref name="firstRow"/> on are ramped: with guidance the unconditional half holds zeros.
    /// </summary>
    public static void ApplyGuessRamp(UNetBinding unet, int firstRow)
    {
        int downs = unet.ResidualCount - 1;
        for (int i = 0; i < downs; i++)
        {
            var t = unet.Residual(i);
            int perRow = t.Length / (int)t.Shape[0];
            Scale((t, firstRow * perRow, t.Length - firstRow * perRow), GuessRamp(i, downs));
        }
    }

    /// <summary>The guess-mode factor of down residual <paramref name="index"/> of <paramref name="downs"/>: 10^(−1 + index/downs).</summary>
    public static float GuessRamp(int index, int downs) => (float)Math.Pow(10, -1 + (double)index / downs);

    /// <inheritdoc />
    public void Dispose()
    {
        _io?.Dispose();
        _cond?.Dispose();
        _scaleValue?.Dispose();
        if (_own is not null) foreach (var own in _own) own?.Dispose();
        foreach (var view in _views) view.Dispose();
    }
}
