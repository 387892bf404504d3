using Microsoft.ML.OnnxRuntime;
using MLNet.Diffusion.Runtime;

namespace MLNet.Diffusion.Denoising;

/// <summary>
/// The UNet's inputs and output for one generation's shape, allocated once and reused at every step:
/// a step writes the latents and timestep into the pinned buffers (converting to float16 where the model
/// wants it), runs, and reads the prediction back. After the first step nothing is allocated on the managed
/// heap (with <see cref="UNetRunPath.IoBinding"/> on the CPU, the default, and <see cref="UNetRunPath.FixedBuffers"/>).
/// Disposing a binding hands it back to its <see cref="UNet"/>, which gives it to the next <see cref="UNet.Bind"/> of the
/// same <see cref="BindingShape"/> (one generation at a time: a concurrent one gets a binding of its own), so that a
/// generation does not allocate, pin and first touch megabytes of buffers; a disposed binding must not be used again.
/// </summary>
/// <remarks>
/// What crosses between host and device per step on CUDA: the sample (B·C·h·w values, in the model's element
/// type) in and the prediction (B·4·h·w) out; the timestep (B values) in. The text embeddings (B·77·D) are copied
/// once, by <see cref="SetHiddenStates"/>, and so are the extra inputs (SDXL's pooled embeddings and time ids, an LCM's
/// guidance embedding), by <see cref="SetExtra"/>: they do not change from step to step, except at the calls where a scheduled
/// prompt (prompt editing, alternation) changes a row, which rewrite them (<see cref="WriteHiddenStates"/>, <see cref="WriteExtra"/>). Every scheduler runs on the host, so no step can skip the two
/// latent-sized copies. On the CPU a float model's step copies nothing: the scheduler scales the latents straight into
/// <see cref="SampleFloats"/> and reads the prediction that <see cref="Run(float, RunOptions)"/> returns from the output buffer.
/// </remarks>
internal sealed class UNetBinding : IDisposable
{
    private readonly UNet _unet;
    private readonly string[] _inputNames;
    private readonly OrtTensor _sample, _timestep, _hidden, _output;
    private readonly OrtTensor[] _extras;
    private readonly OrtTensor[] _residuals;     // a ControlNet-ready UNet's residual inputs, zero unless a ControlNet writes them
    private bool _residualsClear = true;
    private Dictionary<object, IDisposable>? _attachments; // what travels with the binding for reuse (ControlNet bindings)
    private readonly string[] _outputNames;
    private readonly float _timestepScale;       // FLUX.1 takes σ where the scheduler counts 1000·σ (UNet.TimestepScale)
    private readonly OrtValue[] _inputs, _outputs;
    private readonly OrtIoBinding? _io;          // IoBinding
    private readonly bool _rebindEachRun;        // IoBinding on a device: ORT copies host inputs when they are bound
    private readonly FixedBufferSet? _fixed;     // FixedBuffers
    private readonly float[]?[] _scratch = new float[ScratchSlots][];
    private float[]? _prediction;                // a float16 model's prediction, converted
    private RunOptions? _graphOptions;           // the run options already tagged with the set's CUDA graph id
    private bool _holdsGate;                     // FixedBuffers: this binding holds the set's gate
    private bool _disposed;
    private bool _released;

    /// <summary>The number of scratch arrays a binding keeps (<see cref="Scratch"/>).</summary>
    public const int ScratchSlots = 6;

    internal UNetBinding(UNet unet, BindingShape shape)
    {
        _unet = unet;
        Shape = shape;
        int batch = shape.Batch, h = shape.Height, w = shape.Width, sequenceLength = shape.SequenceLength, width = shape.EmbeddingWidth;
        var extraWidths = shape.ExtraWidths;
        Batch = batch;
        RunPath = unet.RunPath;
        _outputNames = [unet.OutputSpec.Name];
        _inputNames = [unet.SampleSpec.Name, unet.TimestepSpec.Name, unet.HiddenStatesSpec.Name, .. unet.Extras.Select(e => e.Spec.Name), .. unet.Residuals.Select(r => r.Spec.Name)];
        _timestepScale = unet.TimestepScale;
        _extras = new OrtTensor[unet.Extras.Count];
        _residuals = new OrtTensor[unet.Residuals.Count];
        try
        {
            // Inside the try: if a later buffer cannot be made (a batch too large for memory), the earlier ones,
            // pinned and holding native OrtValues, are released now rather than by finalizers.
            _sample = OrtTensor.Create(unet.SampleSpec.ElementType, unet.SampleShape(batch, h, w));
            _timestep = unet.TimestepSpec.Rank == 0 ? OrtTensor.Create(unet.TimestepSpec.ElementType) : OrtTensor.Create(unet.TimestepSpec.ElementType, batch);
            _hidden = OrtTensor.Create(unet.HiddenStatesSpec.ElementType, batch, sequenceLength, width);
            _output = OrtTensor.Create(unet.OutputSpec.ElementType, unet.OutputShape(batch, h, w));
            for (int i = 0; i < _extras.Length; i++) _extras[i] = OrtTensor.Create(unet.Extras[i].Spec.ElementType, unet.Extras[i].Shape(batch, extraWidths[i]));
            var residualShapes = unet.ResidualShapes(batch, h, w);
            for (int i = 0; i < _residuals.Length; i++) _residuals[i] = OrtTensor.Create(unet.Residuals[i].Spec.ElementType, residualShapes[i]);
            _inputs = [_sample.Value, _timestep.Value, _hidden.Value, .. _extras.Select(e => e.Value), .. _residuals.Select(r => r.Value)];
            _outputs = [_output.Value];
            switch (RunPath)
            {
                case UNetRunPath.IoBinding:
                    _io = unet.CreateIoBinding();
                    for (int i = 0; i < _inputNames.Length; i++) _io.BindInput(_inputNames[i], _inputs[i]);
                    _io.BindOutput(_outputNames[0], _output.Value);
                    _rebindEachRun = unet.Device != ExecutionDevice.Cpu;
                    break;
                case UNetRunPath.FixedBuffers:
                    _fixed = unet.EnterFixedBuffers(batch, h, w, sequenceLength, width, extraWidths, residualShapes);
                    _holdsGate = true;
                    _fixed.Upload(_hidden, _fixed.Hidden);
                    break;
            }
        }
        catch
        {
            DisposeBuffers();
            throw;
        }
    }

    /// <summary>The shape the buffers are made for.</summary>
    public BindingShape Shape { get; }

    /// <summary>The UNet batch size.</summary>
    public int Batch { get; }

    /// <summary>How the buffers reach ONNX Runtime (see <see cref="UNet.RunPath"/>).</summary>
    public UNetRunPath RunPath { get; }

    /// <summary>Values in the sample input (B·C·h·w).</summary>
    public int SampleLength => _sample.Length;

    /// <summary>Values in the output (B·4·h·w).</summary>
    public int OutputLength => _output.Length;

    /// <summary>Sets the text conditioning for all following runs ([B, 77, D] flattened); on a device it is copied there now, once.</summary>
    public void SetHiddenStates(ReadOnlySpan<float> hiddenStates)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (hiddenStates.Length != _hidden.Length)
            throw new ArgumentException($"encoder_hidden_states needs {_hidden.Length} values ([{string.Join(", ", _hidden.Shape)}]), got {hiddenStates.Length}.", nameof(hiddenStates));
        _hidden.Write(hiddenStates);
        CommitHiddenStates();
    }

    /// <summary>
    /// Writes part of the text conditioning (for example one image's rows) at value <paramref name="offset"/>, straight into
    /// the input buffer; <see cref="CommitHiddenStates"/> then makes the whole of it current. A generation writes its rows
    /// this way rather than gathering them into a [B, 77, D] array first (SDXL: 1.2 MB per guided image).
    /// </summary>
    public void WriteHiddenStates(ReadOnlySpan<float> values, int offset)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (offset < 0 || offset + values.Length > _hidden.Length)
            throw new ArgumentException($"{values.Length} values at offset {offset} do not fit encoder_hidden_states ({_hidden.Length} values, [{string.Join(", ", _hidden.Shape)}]).", nameof(values));
        _hidden.Write(values, offset);
    }

    /// <summary>Makes the text conditioning written by <see cref="WriteHiddenStates"/> current for all following runs; on a device it is copied there now, once.</summary>
    public void CommitHiddenStates()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_rebindEachRun) BindHostInput(2, _hidden);
        if (_fixed is not null) _fixed.Upload(_hidden, _fixed.Hidden);
    }

    /// <summary>Values [B·width] of the extra input <paramref name="index"/> (an index into <see cref="UNet.Extras"/>).</summary>
    public int ExtraLength(int index) => _extras[index].Length;

    /// <summary>
    /// Sets the extra input <paramref name="index"/> (an index into <see cref="UNet.Extras"/>) for all following runs,
    /// [B, width] flattened; on a device it is copied there now, once.
    /// </summary>
    public void SetExtra(int index, ReadOnlySpan<float> values)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var extra = _extras[index];
        if (values.Length != extra.Length)
            throw new ArgumentException($"{_inputNames[3 + index]} needs {extra.Length} values ([{string.Join(", ", extra.Shape)}]), got {values.Length}.", nameof(values));
        extra.Write(values);
        CommitExtra(index);
    }

    /// <summary>
    /// Writes part of the extra input <paramref name="index"/> (for example one row of the pooled text embeddings) at value
    /// <paramref name="offset"/>, straight into its buffer; <see cref="CommitExtra"/> then makes the whole of it current.
    /// </summary>
    public void WriteExtra(int index, ReadOnlySpan<float> values, int offset)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var extra = _extras[index];
        if (offset < 0 || offset + values.Length > extra.Length)
            throw new ArgumentException($"{values.Length} values at offset {offset} do not fit {_inputNames[3 + index]} ({extra.Length} values, [{string.Join(", ", extra.Shape)}]).", nameof(values));
        extra.Write(values, offset);
    }

    /// <summary>Makes the extra input <paramref name="index"/> written by <see cref="WriteExtra"/> current for all following runs; on a device it is copied there now, once.</summary>
    public void CommitExtra(int index)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var extra = _extras[index];
        if (_rebindEachRun) BindHostInput(3 + index, extra);
        if (_fixed is not null) _fixed.Upload(extra, _fixed.Extras[index]);
    }

    /// <summary>The sample input's values themselves when the model takes float (write the step's input here, no copy); empty for float16.</summary>
    public Span<float> SampleFloats
    {
        get
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return _sample.Floats;
        }
    }

    /// <summary>Writes the timestep (a ControlNet that reads it runs before the UNet); <see cref="Run(float, RunOptions)"/> writes it too.</summary>
    public void WriteTimestep(float timestep) => _timestep.Fill(timestep * _timestepScale);

    /// <summary>Writes part of the sample input (for example one CFG half) at <paramref name="offset"/>.</summary>
    public void WriteSample(ReadOnlySpan<float> values, int offset) => _sample.Write(values, offset);

    /// <summary>Runs the UNet at <paramref name="timestep"/> and reads the prediction into <paramref name="output"/>.</summary>
    public void Run(float timestep, Span<float> output, RunOptions runOptions)
    {
        if (output.Length != _output.Length)
            throw new ArgumentException($"The output span needs {_output.Length} values, got {output.Length}.", nameof(output));
        Run(timestep, runOptions).CopyTo(output);
    }

    /// <summary>
    /// Runs the UNet at <paramref name="timestep"/> and returns the prediction [B·4·h·w], valid until the next run: a float
    /// model's output buffer itself (no copy), a float16 model's converted into an array kept with the binding.
    /// </summary>
    public ReadOnlySpan<float> Run(float timestep, RunOptions runOptions)
    {
        ArgumentNullException.ThrowIfNull(runOptions);
        ObjectDisposedException.ThrowIf(_disposed, this);
        RunCore(timestep, runOptions);
        if (_output.ElementType == Microsoft.ML.OnnxRuntime.Tensors.TensorElementType.Float) return _output.Floats;
        var prediction = _prediction ??= new float[_output.Length];
        _output.Read(prediction);
        return prediction;
    }

    private void RunCore(float timestep, RunOptions runOptions)
    {
        _timestep.Fill(timestep * _timestepScale);
        switch (RunPath)
        {
            case UNetRunPath.SessionRun:
                _unet.RunBound(runOptions, _inputNames, _inputs, _outputNames, _outputs, Batch);
                if (_unet.Device != ExecutionDevice.Cpu) CountSessionRunCopies();
                break;
            case UNetRunPath.IoBinding:
                if (_rebindEachRun)
                {
                    BindHostInput(0, _sample);
                    BindHostInput(1, _timestep);
                    int first = 3 + _extras.Length;
                    for (int i = 0; i < _residuals.Length; i++) BindHostInput(first + i, _residuals[i]);
                }
                _unet.RunBound(runOptions, _io!, Batch);
                // The output is bound to host memory: on a device ONNX Runtime copies the prediction into it after the run.
                if (_rebindEachRun) _unet.CountCopy(toDevice: false, _output.RawBytes.Length);
                break;
            default:
                var set = _fixed!;
                set.Upload(_sample, set.Sample);
                set.Upload(_timestep, set.Timestep);
                for (int i = 0; i < _residuals.Length; i++) set.Upload(_residuals[i], set.Residuals[i]);
                if (_unet.CudaGraph && !ReferenceEquals(runOptions, _graphOptions))
                {
                    runOptions.AddRunConfigEntry("gpu_graph_id", set.GraphId);
                    _graphOptions = runOptions;
                }
                _unet.RunBound(runOptions, set.Binding, Batch);
                set.Download(set.Output, _output);
                break;
        }
    }

    /// <summary>A run of host values on a device session: ONNX Runtime copies every input there and the output back, each run.</summary>
    private void CountSessionRunCopies()
    {
        _unet.CountCopy(toDevice: true, _sample.RawBytes.Length);
        _unet.CountCopy(toDevice: true, _timestep.RawBytes.Length);
        _unet.CountCopy(toDevice: true, _hidden.RawBytes.Length);
        foreach (var extra in _extras) _unet.CountCopy(toDevice: true, extra.RawBytes.Length);
        foreach (var residual in _residuals) _unet.CountCopy(toDevice: true, residual.RawBytes.Length);
        _unet.CountCopy(toDevice: false, _output.RawBytes.Length);
    }

    /// <summary>Binds a host buffer to input <paramref name="index"/> of a device session: ONNX Runtime copies it to the device now (one counted copy).</summary>
    private void BindHostInput(int index, OrtTensor host)
    {
        _io!.BindInput(_inputNames[index], host.Value);
        _unet.CountCopy(toDevice: true, host.RawBytes.Length);
    }

    /// <summary>The ControlNet residual buffers (<see cref="UNet.Residuals"/> order), bound as the UNet's inputs: a
    /// ControlNet's outputs are bound to them (or to views of them), so its residuals reach the UNet without a copy.</summary>
    internal OrtTensor Residual(int index) => _residuals[index];

    /// <summary>
    /// The object kept with this binding under <paramref name="key"/>, made by <paramref name="create"/> the first time:
    /// a ControlNet's binding to this UNet binding's buffers travels with it to the next generation of its shape, so that
    /// a generation allocates no ControlNet buffers either. Released with the binding's buffers.
    /// </summary>
    internal T Attachment<T>(object key, Func<T> create) where T : class, IDisposable
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        _attachments ??= [];
        if (_attachments.TryGetValue(key, out var existing)) return (T)existing;
        var created = create();
        _attachments.Add(key, created);
        return created;
    }

    /// <summary>Notes that a ControlNet has written the residuals (so that <see cref="ClearResiduals"/> clears them).</summary>
    internal void ResidualsWritten() => _residualsClear = false;

    /// <summary>The UNet's extra inputs (<see cref="UNet.Extras"/>).</summary>
    internal IReadOnlyList<UNetExtraInput> Extras => _unet.Extras;

    /// <summary>The <c>sample</c> buffer (a ControlNet reads the same latent model input).</summary>
    internal OrtTensor SampleTensor => _sample;

    /// <summary>The <c>timestep</c> buffer.</summary>
    internal OrtTensor TimestepTensor => _timestep;

    /// <summary>The <c>encoder_hidden_states</c> buffer.</summary>
    internal OrtTensor HiddenStatesTensor => _hidden;

    /// <summary>The extra input buffer <paramref name="index"/> (<see cref="UNet.Extras"/> order).</summary>
    internal OrtTensor ExtraTensor(int index) => _extras[index];

    /// <summary>The number of residual buffers (0 for a plain UNet).</summary>
    public int ResidualCount => _residuals.Length;

    /// <summary>
    /// Sets every residual to zero (the UNet then predicts as without a ControlNet: diffusers' ControlNets at scale 0),
    /// unless they are zero already: once per change, not per step.
    /// </summary>
    public void ClearResiduals()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_residualsClear) return;
        foreach (var residual in _residuals) residual.RawBytes.Clear();
        _residualsClear = true;
    }

    /// <summary>
    /// A float array of <paramref name="length"/> values kept with the binding (slot 0 to <see cref="ScratchSlots"/> − 1):
    /// the generation's host-side working arrays (latents, model input, prediction) travel with its binding and are reused
    /// with it. Its values are whatever the last user left there; the caller writes before it reads.
    /// </summary>
    public float[] Scratch(int slot, int length)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var array = _scratch[slot];
        if (array is null || array.Length != length) _scratch[slot] = array = new float[length];
        return array;
    }

    /// <summary>Makes a binding taken back by its UNet usable again, for a new generation of the same shape.</summary>
    internal void Reopen()
    {
        if (_fixed is not null)
        {
            _fixed.Gate.Wait();
            _holdsGate = true;
        }
        _graphOptions = null;
        _disposed = false;
        // The last generation's ControlNet may have left residuals: a new one starts from none.
        _residualsClear = _residuals.Length == 0;
        ClearResiduals();
    }

    /// <summary>Ends the generation's use of the binding: the UNet keeps it for the next generation of its shape, or it is released.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        ReleaseGate();
        if (!_unet.TryKeepForReuse(this)) Release();
    }

    /// <summary>Releases the buffers and native values (the UNet calls it when it no longer keeps the binding).</summary>
    internal void Release()
    {
        _disposed = true;
        if (_released) return;
        _released = true;
        DisposeBuffers();
    }

    private void ReleaseGate()
    {
        if (!_holdsGate) return;
        _holdsGate = false;
        try
        {
            _fixed!.Gate.Release();
        }
        catch (ObjectDisposedException)
        {
            // The UNet was disposed first and took the buffers with it.
        }
    }

    private void DisposeBuffers()
    {
        _io?.Dispose();
        ReleaseGate();
        _sample?.Dispose();
        _timestep?.Dispose();
        _hidden?.Dispose();
        _output?.Dispose();
        if (_extras is not null) foreach (var extra in _extras) extra?.Dispose();
        if (_residuals is not null) foreach (var residual in _residuals) residual?.Dispose();
        if (_attachments is not null) foreach (var attachment in _attachments.Values) attachment.Dispose();
        _attachments = null;
    }
}
