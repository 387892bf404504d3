using Microsoft.ML.OnnxRuntime;
using MLNet.Diffusion.Runtime;

namespace MLNet.Diffusion.Denoising;

/// <summary>
/// The UNet's inputs and output for one generation's shape, allocated once and reused at every step:
/// a step writes the latents and timestep into the pinned buffers (converting to float16 where the model
/// wants it), runs, and reads the prediction back.
/// </summary>
public sealed class UNetBinding : IDisposable
{
    private readonly UNet _unet;
    private readonly OrtTensor _sample, _timestep, _hidden, _output;
    private readonly string[] _inputNames, _outputNames;
    private readonly OrtValue[] _inputs, _outputs;

    internal UNetBinding(UNet unet, int batch, int h, int w, int sequenceLength, int width)
    {
        _unet = unet;
        Batch = batch;
        _sample = OrtTensor.Create(unet.SampleSpec.ElementType, batch, unet.InChannels, h, w);
        _timestep = unet.TimestepSpec.Rank == 0 ? OrtTensor.Create(unet.TimestepSpec.ElementType) : OrtTensor.Create(unet.TimestepSpec.ElementType, batch);
        _hidden = OrtTensor.Create(unet.HiddenStatesSpec.ElementType, batch, sequenceLength, width);
        _output = OrtTensor.Create(unet.OutputSpec.ElementType, batch, unet.OutChannels, h, w);
        _inputNames = ["sample", "timestep", "encoder_hidden_states"];
        _inputs = [_sample.Value, _timestep.Value, _hidden.Value];
        _outputNames = [unet.OutputSpec.Name];
        _outputs = [_output.Value];
    }

    /// <summary>The UNet batch size.</summary>
    public int Batch { get; }

    /// <summary>Values in the sample input (B·C·h·w).</summary>
    public int SampleLength => _sample.Length;

    /// <summary>Values in the output (B·4·h·w).</summary>
    public int OutputLength => _output.Length;

    /// <summary>Sets the text conditioning for all following runs ([B, 77, D] flattened).</summary>
    public void SetHiddenStates(ReadOnlySpan<float> hiddenStates)
    {
        if (hiddenStates.Length != _hidden.Length)
            throw new ArgumentException($"encoder_hidden_states needs {_hidden.Length} values ([{string.Join(", ", _hidden.Shape)}]), got {hiddenStates.Length}.", nameof(hiddenStates));
        _hidden.Write(hiddenStates);
    }

    /// <summary>Writes part of the sample input (for example one CFG half) at <paramref name="offset"/>.</summary>
    public void WriteSample(ReadOnlySpan<float> values, int offset) => _sample.Write(values, offset);

    /// <summary>Runs the UNet at <paramref name="timestep"/> and reads the prediction into <paramref name="output"/>.</summary>
    public void Run(float timestep, Span<float> output, RunOptions runOptions)
    {
        if (output.Length != _output.Length)
            throw new ArgumentException($"The output span needs {_output.Length} values, got {output.Length}.", nameof(output));
        _timestep.Fill(timestep);
        _unet.RunBound(runOptions, _inputNames, _inputs, _outputNames, _outputs);
        _output.Read(output);
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _sample.Dispose();
        _timestep.Dispose();
        _hidden.Dispose();
        _output.Dispose();
    }
}
