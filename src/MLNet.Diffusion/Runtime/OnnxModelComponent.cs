using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace MLNet.Diffusion.Runtime;

/// <summary>
/// One ONNX model of a diffusion folder (text encoder, UNet, VAE decoder or encoder): its session, created
/// once and reused, and its declared inputs and outputs, checked against what the component needs.
/// </summary>
internal abstract class OnnxModelComponent : IDisposable
{
    private bool _disposed;

    /// <summary>Opens <paramref name="modelPath"/> with <paramref name="sessions"/>. A derived constructor that refuses the
    /// model after this must call <see cref="Dispose()"/> before throwing, so that the session is released at once.</summary>
    /// <exception cref="FileNotFoundException">The model file does not exist.</exception>
    /// <exception cref="InvalidDataException">ONNX Runtime cannot load the file.</exception>
    protected OnnxModelComponent(string componentName, string modelPath, OnnxSessionFactory sessions)
        : this(componentName, modelPath, sessions, false)
    {
    }

    /// <summary>Opens <paramref name="modelPath"/> with <paramref name="sessions"/>, asking for CUDA-graph capture
    /// when <paramref name="cudaGraph"/> (see <see cref="CudaGraph"/> for whether it was granted).</summary>
    /// <exception cref="FileNotFoundException">The model file does not exist.</exception>
    /// <exception cref="InvalidDataException">ONNX Runtime cannot load the file.</exception>
    private protected OnnxModelComponent(string componentName, string modelPath, OnnxSessionFactory sessions, bool cudaGraph)
    {
        ArgumentNullException.ThrowIfNull(sessions);
        ComponentName = componentName;
        ModelPath = modelPath;
        if (!File.Exists(modelPath))
            throw new FileNotFoundException($"The {componentName} model '{modelPath}' was not found. A diffusers ONNX export has it at {componentName}/model.onnx.", modelPath);
        try
        {
            Session = sessions.Create(modelPath, cudaGraph, out bool graph);
            CudaGraph = graph;
        }
        catch (OnnxRuntimeException e)
        {
            throw new InvalidDataException($"The {componentName} model '{modelPath}' could not be loaded by ONNX Runtime: {e.Message.Trim()}", e);
        }
        Interlocked.Increment(ref s_liveSessions);
        Device = sessions.ActualDevice;
        try
        {
            Inputs = Session.InputMetadata.ToDictionary(kv => kv.Key, kv => TensorSpec.From(kv.Key, kv.Value));
            Outputs = Session.OutputMetadata.ToDictionary(kv => kv.Key, kv => TensorSpec.From(kv.Key, kv.Value));
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    private static long s_liveSessions;

    /// <summary>Sessions created by components and not yet disposed, process-wide (leak tests).</summary>
    internal static long LiveSessions => Interlocked.Read(ref s_liveSessions);

    /// <summary>The folder name of the component (<c>unet</c>, <c>text_encoder</c>, …).</summary>
    public string ComponentName { get; }

    /// <summary>The .onnx file.</summary>
    public string ModelPath { get; }

    /// <summary>The device the session runs on.</summary>
    public ExecutionDevice Device { get; }

    /// <summary>Whether the session captures and replays a CUDA graph.</summary>
    public bool CudaGraph { get; }

    /// <summary>The declared inputs, by name.</summary>
    public IReadOnlyDictionary<string, TensorSpec> Inputs { get; }

    /// <summary>The declared outputs, by name.</summary>
    public IReadOnlyDictionary<string, TensorSpec> Outputs { get; }

    /// <summary>The ONNX Runtime session.</summary>
    protected InferenceSession Session { get; }

    /// <summary>Finds a declared input or output and checks its element type and rank.</summary>
    /// <exception cref="InvalidDataException">Missing, or of another type or rank; the message names the file, what was found and what was expected.</exception>
    protected TensorSpec Require(bool input, string name, TensorElementType[] types, params int[] ranks)
    {
        var map = input ? Inputs : Outputs;
        string kind = input ? "input" : "output";
        if (!map.TryGetValue(name, out var spec))
            throw new InvalidDataException($"The {ComponentName} model '{ModelPath}' has no {kind} '{name}' (it declares {Describe(map)}). Expected the diffusers/Optimum ONNX export contract.");
        if (!types.Contains(spec.ElementType))
            throw new InvalidDataException($"The {ComponentName} model '{ModelPath}': {kind} '{name}' is {TensorSpec.ElementName(spec.ElementType)}, expected {string.Join(" or ", types.Select(TensorSpec.ElementName))}.");
        if (ranks.Length > 0 && !ranks.Contains(spec.Rank))
            throw new InvalidDataException($"The {ComponentName} model '{ModelPath}': {kind} '{name}' has rank {spec.Rank} ({spec}), expected rank {string.Join(" or ", ranks)}.");
        return spec;
    }

    /// <summary>The first of several accepted output names that the model declares.</summary>
    protected string? FirstOutput(params string[] names) => names.FirstOrDefault(Outputs.ContainsKey);

    /// <summary>Checks that a fixed declared dimension (if fixed) equals <paramref name="actual"/>.</summary>
    protected void CheckDimension(TensorSpec spec, int axis, long actual, string meaning)
    {
        if (axis < spec.Rank && spec.Dimensions[axis] > 0 && spec.Dimensions[axis] != actual)
            throw new ArgumentException($"The {ComponentName} model '{ModelPath}' fixes {spec.Name} dimension {axis} ({meaning}) to {spec.Dimensions[axis]}, but {actual} was asked for.");
    }

    /// <summary>Runs the session with pre-allocated inputs and outputs.</summary>
    protected void Run(RunOptions options, string[] inputNames, OrtValue[] inputs, string[] outputNames, OrtValue[] outputs)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        Session.Run(options, inputNames, inputs, outputNames, outputs);
    }

    /// <summary>Runs the session with its inputs and outputs bound in <paramref name="binding"/>.</summary>
    private protected void Run(RunOptions options, OrtIoBinding binding)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        Session.RunWithBinding(options, binding);
    }

    private static string Describe(IReadOnlyDictionary<string, TensorSpec> map) =>
        map.Count == 0 ? "none" : string.Join(", ", map.Values.Select(s => s.ToString()));

    /// <summary>Throws if disposed.</summary>
    protected void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed, this);

    /// <inheritdoc />
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        Dispose(true);
        Session.Dispose();
        Interlocked.Decrement(ref s_liveSessions);
        GC.SuppressFinalize(this);
    }

    /// <summary>Releases the component's own native buffers.</summary>
    protected virtual void Dispose(bool disposing) { }
}
