using Microsoft.Extensions.Logging;
using Microsoft.ML.OnnxRuntime;
using MLNet.Diffusion.Runtime;

namespace MLNet.Diffusion;

/// <summary>How the model components are run: device, fallback, threads and graph optimisation.</summary>
public sealed class DiffusionRuntimeOptions
{
    /// <summary>The execution provider to ask for. Default: CPU.</summary>
    public ExecutionDevice Device { get; set; } = ExecutionDevice.Cpu;

    /// <summary>The CUDA device ordinal (as <c>MLContext.GpuDeviceId</c>). Default 0.</summary>
    public int DeviceId { get; set; }

    /// <summary>When CUDA cannot be loaded, run on the CPU and log why (true, the default, as
    /// <c>MLContext.FallbackToCpu</c>), or throw (false).</summary>
    public bool FallbackToCpu { get; set; } = true;

    /// <summary>
    /// Threads ONNX Runtime uses inside an operator (convolutions, GEMMs). 0 (default): one per physical core
    /// available to the process (hyper-threads and cores outside the affinity mask or container quota are not
    /// counted), which is the fastest setting for the UNet on the CPU. When the process may use the whole machine,
    /// that is ONNX Runtime's own default pool, whose threads are pinned to their cores
    /// (<see cref="OnnxSessionFactory.PinnedByOnnxRuntime"/>); an explicit count gives unpinned threads.
    /// </summary>
    public int IntraOpThreads { get; set; }

    /// <summary>Threads ONNX Runtime uses across operators; 0 (default) lets ONNX Runtime choose. The models run
    /// with sequential execution, where this has no effect.</summary>
    public int InterOpThreads { get; set; }

    /// <summary>
    /// Run the UNet through an <see cref="OrtIoBinding"/> (default true): its inputs and output are bound once per
    /// generation and every step is a single <c>RunWithBinding</c> call, which allocates no managed memory.
    /// On the CPU the bound tensors are the pinned step buffers themselves (no copies). On CUDA the text
    /// embeddings are copied to the device once per generation and stay there; each step copies only the
    /// latents in and the noise prediction out. False uses <c>InferenceSession.Run</c> with name and value
    /// arrays, which allocates a few hundred bytes per step.
    /// </summary>
    public bool UseIoBinding { get; set; } = true;

    /// <summary>
    /// Capture the UNet into a CUDA graph and replay it at every step (CUDA only; default false). All UNet
    /// inputs and the output then live in fixed device buffers, one set per image shape and batch size (each
    /// gets its own graph), filled and read with <c>cudaMemcpy</c>; one generation per shape runs at a time.
    /// Requires <see cref="UseIoBinding"/>, a UNet whose nodes all run on the CUDA provider, and the CUDA
    /// runtime library. Ignored on the CPU; when the CUDA runtime cannot be loaded the UNet runs without a
    /// graph and the reason is logged.
    /// </summary>
    [System.Diagnostics.CodeAnalysis.Experimental(ExperimentalCudaGraph)]
    public bool EnableCudaGraph { get; set; }

    /// <summary>The diagnostic id of <see cref="EnableCudaGraph"/>, experimental until a GPU test of it passes.</summary>
    public const string ExperimentalCudaGraph = "MLND001";

    /// <summary>Tests: use the fixed-buffer path that CUDA graphs need also on the CPU (host memory, span copies).</summary>
    internal bool ForceFixedBuffers { get; set; }

    /// <summary>
    /// Bound memory by model instead of keeping every component loaded (default false). When true, the text encoders are
    /// loaded for encoding and released after it, and the VAE decoder (encoder) for decoding (encoding) and released after
    /// it; only the UNet stays loaded between calls. Concurrent calls share one loaded instance of each component, which is
    /// released when the last of them is done with it. The sessions also run without ONNX Runtime's CPU memory arena, so
    /// activation memory goes back to the system when a run ends instead of staying reserved for the next one. The
    /// images are bit-identical; each call pays the text encoders' and the VAE's load time (docs/PERFORMANCE.md gives the
    /// peak and the after-generation working set with and without).
    /// </summary>
    public bool LowMemory { get; set; }

    /// <summary>Benchmarks: ONNX Runtime's CPU memory arena on (true) or off (false) whatever <see cref="LowMemory"/> says;
    /// null (default): off exactly in low-memory mode.</summary>
    internal bool? CpuMemoryArena { get; set; }

    /// <summary>The graph optimisation level. Default: all optimisations.</summary>
    public GraphOptimizationLevel GraphOptimizationLevel { get; set; } = GraphOptimizationLevel.ORT_ENABLE_ALL;

    /// <summary>Where to log device choice, fallback reasons and warnings (e.g. truncated prompts), and, at
    /// <see cref="LogLevel.Debug"/>, ONNX Runtime's own log lines for this model's sessions, which are never printed to
    /// standard error. Default: nowhere.</summary>
    public ILogger? Logger { get; set; }

    /// <summary>
    /// Let ONNX Runtime collect and upload its usage telemetry (default false: off). ONNX Runtime 1.31's official Linux
    /// and macOS builds otherwise write a device id and an event database under
    /// <c>~/.cache/Microsoft/DeveloperTools/.onnxruntime/</c> and upload session-creation, error and process events
    /// (executable name, model producer, graph hashes) to Microsoft; on Windows they emit ETW events. Off, the library sets
    /// <c>ORT_DISABLE_TELEMETRY=1</c> in the process environment before ONNX Runtime starts and calls
    /// <c>DisableTelemetryEvents</c>, so nothing is written or sent. The setting is process-wide: the first
    /// <see cref="OnnxSessionFactory"/> created in the process (the first model loaded) decides it, and it must be made
    /// before anything else in the process uses ONNX Runtime; a later, different value is logged and ignored.
    /// </summary>
    public bool EnableOnnxRuntimeTelemetry { get; set; }

    /// <summary>
    /// Textual-inversion embeddings to load with the model: each <c>.safetensors</c> file's path, and the trigger word
    /// that stands for it in prompts, or null for the file's own (the file name for AUTOMATIC1111 and SDXL files, as A1111
    /// names them; each tensor's name for a diffusers <c>learned_embeds</c> file). Default: none. A trigger word found in
    /// a prompt as a whole word (case-insensitive) inserts the embedding's vectors: an embedding of n vectors takes n token
    /// positions. Layouts read: A1111's <c>emb_params</c>, SDXL's <c>clip_l</c> and <c>clip_g</c> (each text encoder takes
    /// the vectors of its width), diffusers' <c>{token: tensor}</c>; PyTorch pickles (<c>.pt</c>, <c>.bin</c>) are refused
    /// and never opened. The files are read when the model loads, and a model loaded with other embeddings (or files
    /// changed since) is a different model: it gets its own sessions. Prompts without a trigger word encode exactly as
    /// without embeddings.
    /// </summary>
    public IDictionary<string, string?> TextualInversions { get; set; } = new Dictionary<string, string?>();

    /// <summary>
    /// Stable Diffusion 3 without its T5 encoder: the folder's <c>text_encoder_3</c> is not loaded (T5-XXL alone takes about
    /// 9.5 GB in float16) and zeros take the place of its embeddings, as diffusers does when <c>text_encoder_3=None</c>.
    /// Prompts then condition through the two CLIP encoders only (77 tokens). FLUX.1 cannot run without T5 and refuses
    /// this. Ignored by other families. Default false. The CLI's <c>--no-t5</c>.
    /// </summary>
    public bool WithoutT5 { get; set; }

    /// <summary>
    /// T5's tokens per prompt for SD3 and FLUX.1 (diffusers' <c>max_sequence_length</c>, 1 to 512): longer prompts are cut
    /// there, shorter ones padded. Null: the transformer's fixed sequence axis where its export fixes one, else 256 for SD3
    /// and FLUX.1-schnell and 512 for FLUX.1-dev (the values their model cards use). Ignored by other families. The CLI's
    /// <c>--max-sequence-length</c>.
    /// </summary>
    public int? MaxSequenceLength { get; set; }

    /// <summary>A copy; <see cref="TextualInversions"/> is copied too, so a later change to the original does not reach it.</summary>
    public DiffusionRuntimeOptions Clone()
    {
        var copy = (DiffusionRuntimeOptions)MemberwiseClone();
        copy.TextualInversions = TextualInversions is null ? new Dictionary<string, string?>() : new Dictionary<string, string?>(TextualInversions);
        return copy;
    }
}
