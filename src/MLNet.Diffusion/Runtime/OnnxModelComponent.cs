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
        : this(componentName, modelPath, sessions, cudaGraph, null)
    {
    }

    /// <summary>Opens <paramref name="modelPath"/> with <paramref name="initializers"/> in place of the file's initializers of
    /// the same names. The component owns them from here on, whatever happens: they are disposed after the session.</summary>
    /// <exception cref="FileNotFoundException">The model file does not exist.</exception>
    /// <exception cref="InvalidDataException">ONNX Runtime cannot load the file.</exception>
    private protected OnnxModelComponent(string componentName, string modelPath, OnnxSessionFactory sessions, bool cudaGraph,
        IReadOnlyList<KeyValuePair<string, OrtValue>>? initializers)
    {
        _initializers = initializers;
        try
        {
            ArgumentNullException.ThrowIfNull(sessions);
            ComponentName = componentName;
            ModelPath = modelPath;
            if (!File.Exists(modelPath))
                throw new FileNotFoundException($"The {componentName} model '{modelPath}' was not found. A diffusers ONNX export has it at {componentName}/model.onnx.", modelPath);
            try
            {
                Session = sessions.Create(modelPath, cudaGraph, out bool graph, initializers);
                CudaGraph = graph;
            }
            catch (OnnxRuntimeException e)
            {
                throw new InvalidDataException($"The {componentName} model '{modelPath}' could not be loaded by ONNX Runtime: {e.Message.Trim()}", e);
            }
        }
        catch
        {
            DisposeInitializers();
            throw;
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

    /// <summary>Initializers given to the session in place of the file's; released after it.</summary>
    private readonly IReadOnlyList<KeyValuePair<string, OrtValue>>? _initializers;

    private void DisposeInitializers()
    {
        if (_initializers is null) return;
        foreach (var (_, value) in _initializers) value.Dispose();
    }

    /// <summary>Sessions created by components and not yet disposed, process-wide (leak tests).</summary>
    internal static long LiveSessions => Interlocked.Read(ref s_liveSessions);

    /// <summary>The folder name of the component (<c>unet</c>, <c>text_encoder</c>, …).</summary>
    public string ComponentName { get; }

    /// <summary>The .onnx file.</summary>
    public string ModelPath { get; }

    /// <summary>The file as a model folder names it, folder and file name: <c>unet/model.onnx</c>.</summary>
    internal string ComponentFile => ComponentFileOf(ModelPath);

    /// <summary>Whether any declared input or output is float16 (an fp16 export; one that keeps float32 boundaries cannot be told from outside).</summary>
    internal bool HasFloat16Boundaries => Inputs.Values.Concat(Outputs.Values).Any(s => s.ElementType == TensorElementType.Float16);

    /// <summary>The last folder and the file name of <paramref name="path"/>, joined with '/'.</summary>
    internal static string ComponentFileOf(string path) =>
        path.Length == 0 ? ""
        : Path.GetFileName(Path.GetDirectoryName(path)) is { Length: > 0 } folder ? $"{folder}/{Path.GetFileName(path)}"
        : Path.GetFileName(path);

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
    /// <exception cref="ModelRunException">ONNX Runtime failed the run (the message names the file and the inputs).</exception>
    protected void Run(RunOptions options, string[] inputNames, OrtValue[] inputs, string[] outputNames, OrtValue[] outputs)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        try
        {
            Session.Run(options, inputNames, inputs, outputNames, outputs);
        }
        catch (OnnxRuntimeException e) when (!options.Terminate)
        {
            throw Failed(e, inputNames, inputs);
        }
    }

    /// <summary>Runs the session on <paramref name="inputs"/> and returns the outputs that ONNX Runtime allocates.</summary>
    /// <exception cref="ModelRunException">ONNX Runtime failed the run (the message names the file and the inputs).</exception>
    protected IDisposableReadOnlyCollection<OrtValue> Run(RunOptions options, string[] inputNames, OrtValue[] inputs, string[] outputNames)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        try
        {
            return Session.Run(options, inputNames, inputs, outputNames);
        }
        catch (OnnxRuntimeException e) when (!options.Terminate)
        {
            throw Failed(e, inputNames, inputs);
        }
    }

    /// <summary>Runs the session with its inputs and outputs bound in <paramref name="binding"/>.</summary>
    /// <exception cref="ModelRunException">ONNX Runtime failed the run (the message names the file).</exception>
    private protected void Run(RunOptions options, OrtIoBinding binding)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        try
        {
            Session.RunWithBinding(options, binding);
        }
        catch (OnnxRuntimeException e) when (!options.Terminate)
        {
            throw Failed(e, [], []);
        }
    }

    /// <summary>
    /// The one place where a failed run becomes a <see cref="ModelRunException"/>: one line with the component file,
    /// the inputs it was given (names, element types, shapes) and ONNX Runtime's message. A run stopped by
    /// <see cref="RunOptions.Terminate"/> keeps ONNX Runtime's exception, which the callers turn into cancellation.
    /// </summary>
    private ModelRunException Failed(OnnxRuntimeException e, string[] inputNames, OrtValue[] inputs)
    {
        string runtime = OneLine(e.Message);
        string given = "";
        if (inputs.Length > 0)
        {
            var parts = new string[inputs.Length];
            for (int i = 0; i < inputs.Length; i++)
            {
                string shape;
                try
                {
                    var info = inputs[i].GetTensorTypeAndShape();
                    shape = $"{TensorSpec.ElementName(info.ElementDataType)} [{string.Join(", ", info.Shape)}]";
                }
                catch (OnnxRuntimeException)
                {
                    shape = "(not a tensor)";
                }
                parts[i] = $"{(i < inputNames.Length ? inputNames[i] : "?")} {shape}";
            }
            given = $" on {string.Join(", ", parts)}";
        }
        string advice = runtime.Contains("allocate", StringComparison.OrdinalIgnoreCase)
            ? "ONNX Runtime could not get the memory this call needs: use a smaller image size or batch, or a device with more memory."
            : "The file is damaged, or it does not match the rest of the model folder (tokenizer, sizes, exporter); check it with 'info' or download it again.";
        return new ModelRunException($"The {ComponentName} model '{ModelPath}' failed while running{given}: {runtime} {advice}", ComponentName, ModelPath, runtime, e);
    }

    private static string OneLine(string text) =>
        string.Join(' ', text.Split(['\r', '\n'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)).TrimEnd('.') + ".";

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
        DisposeInitializers(); // after the session, which reads them until it is released
        Interlocked.Decrement(ref s_liveSessions);
        GC.SuppressFinalize(this);
    }

    /// <summary>Releases the component's own native buffers.</summary>
    protected virtual void Dispose(bool disposing) { }
}
