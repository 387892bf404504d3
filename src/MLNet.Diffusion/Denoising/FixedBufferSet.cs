using Microsoft.ML.OnnxRuntime;
using MLNet.Diffusion.Runtime;

namespace MLNet.Diffusion.Denoising;

/// <summary>
/// The UNet's inputs and output for one shape in fixed buffers in the session's device memory, bound once in
/// an <see cref="OrtIoBinding"/>: a CUDA graph captured on the first runs reads and writes these addresses at
/// every replay. Owned by the <see cref="UNet"/> (a graph outlives any one generation); one
/// <see cref="UNetBinding"/> at a time holds <see cref="Gate"/>.
/// </summary>
internal sealed class FixedBufferSet : IDisposable
{
    private readonly ExecutionDevice _device;
    private readonly UNet _unet;

    internal FixedBufferSet(UNet unet, int graphId, int batch, int h, int w, int sequenceLength, int width, int[] extraWidths, long[][] residualShapes)
    {
        _device = unet.Device;
        _unet = unet;
        GraphId = graphId.ToString(System.Globalization.CultureInfo.InvariantCulture);
        var values = new List<IDisposable>();
        try
        {
            Sample = Add(unet.AllocateDeviceTensor(unet.SampleSpec.ElementType, unet.SampleShape(batch, h, w)));
            Timestep = Add(unet.AllocateDeviceTensor(unet.TimestepSpec.ElementType, unet.TimestepSpec.Rank == 0 ? [] : [batch]));
            Hidden = Add(unet.AllocateDeviceTensor(unet.HiddenStatesSpec.ElementType, [batch, sequenceLength, width]));
            Output = Add(unet.AllocateDeviceTensor(unet.OutputSpec.ElementType, unet.OutputShape(batch, h, w)));
            Extras = new OrtValue[unet.Extras.Count];
            for (int i = 0; i < Extras.Length; i++) Extras[i] = Add(unet.AllocateDeviceTensor(unet.Extras[i].Spec.ElementType, unet.Extras[i].Shape(batch, extraWidths[i])));
            Residuals = new OrtValue[residualShapes.Length];
            for (int i = 0; i < Residuals.Length; i++) Residuals[i] = Add(unet.AllocateDeviceTensor(unet.Residuals[i].Spec.ElementType, residualShapes[i]));
            Binding = unet.CreateIoBinding();
            values.Add(Binding);
            Binding.BindInput(unet.SampleSpec.Name, Sample);
            Binding.BindInput(unet.TimestepSpec.Name, Timestep);
            Binding.BindInput(unet.HiddenStatesSpec.Name, Hidden);
            for (int i = 0; i < Extras.Length; i++) Binding.BindInput(unet.Extras[i].Spec.Name, Extras[i]);
            for (int i = 0; i < Residuals.Length; i++) Binding.BindInput(unet.Residuals[i].Spec.Name, Residuals[i]);
            Binding.BindOutput(unet.OutputSpec.Name, Output);
        }
        catch
        {
            foreach (var v in values) v.Dispose();
            throw;
        }

        OrtValue Add(OrtValue v)
        {
            values.Add(v);
            return v;
        }
    }

    /// <summary>The CUDA graph annotation id of this shape (<c>gpu_graph_id</c>).</summary>
    public string GraphId { get; }

    public OrtValue Sample { get; }
    public OrtValue Timestep { get; }
    public OrtValue Hidden { get; }
    public OrtValue Output { get; }
    /// <summary>The extra inputs, in <see cref="UNet.Extras"/> order.</summary>
    public OrtValue[] Extras { get; } = [];
    /// <summary>The ControlNet residual inputs, in <see cref="UNet.Residuals"/> order (uploaded at each step).</summary>
    public OrtValue[] Residuals { get; } = [];
    public OrtIoBinding Binding { get; }

    /// <summary>Held by the binding that uses the set.</summary>
    public SemaphoreSlim Gate { get; } = new(1, 1);

    /// <summary>Copies a host tensor into its device buffer (the same element type and size).</summary>
    public unsafe void Upload(OrtTensor host, OrtValue device)
    {
        var source = host.RawBytes;
        var destination = device.GetTensorMutableRawData();
        if (_device == ExecutionDevice.Cpu)
        {
            source.CopyTo(destination);
            return;
        }
        fixed (byte* s = source)
        fixed (byte* d = destination)
            CudaRuntime.Copy((IntPtr)d, (IntPtr)s, source.Length);
        _unet.CountCopy(toDevice: true, source.Length);
    }

    /// <summary>Copies a device buffer into its host tensor.</summary>
    public unsafe void Download(OrtValue device, OrtTensor host)
    {
        var source = device.GetTensorMutableRawData();
        var destination = host.RawBytes;
        if (_device == ExecutionDevice.Cpu)
        {
            source.CopyTo(destination);
            return;
        }
        fixed (byte* s = source)
        fixed (byte* d = destination)
            CudaRuntime.Copy((IntPtr)d, (IntPtr)s, destination.Length);
        _unet.CountCopy(toDevice: false, destination.Length);
    }

    public void Dispose()
    {
        Binding.Dispose();
        Sample.Dispose();
        Timestep.Dispose();
        Hidden.Dispose();
        Output.Dispose();
        foreach (var extra in Extras) extra?.Dispose();
        foreach (var residual in Residuals) residual?.Dispose();
        Gate.Dispose();
    }
}
