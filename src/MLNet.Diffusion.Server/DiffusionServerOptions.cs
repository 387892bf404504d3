namespace MLNet.Diffusion.Server;

/// <summary>
/// The server's settings: which models it serves (by name, never by a path from a request), the queue in front of the
/// engine, the API key, and the limits on what one request may ask for.
/// </summary>
public sealed class DiffusionServerOptions
{
    /// <summary>The model name served when <see cref="Models"/> is empty: the built-in demo model.</summary>
    public const string DemoModelName = "demo";

    /// <summary>
    /// The models served: name → model folder (a diffusers/Optimum ONNX export). Requests name a model by its key; a
    /// name that is not here is refused (404), and no request can reach a folder by path. Empty: the built-in demo model
    /// as <see cref="DemoModelName"/>. The first entry is the default for requests that name none.
    /// </summary>
    public IDictionary<string, string> Models { get; } = new Dictionary<string, string>(StringComparer.Ordinal);

    /// <summary>
    /// The API key clients must send as <c>Authorization: Bearer KEY</c> (compared in constant time); null or empty: no
    /// authentication (then bind to loopback only). <c>/healthz</c> and the web page at <c>/</c> need no key.
    /// </summary>
    public string? ApiKey { get; set; }

    /// <summary>Runtime settings the models are loaded with (device, threads); null: CPU defaults.</summary>
    public DiffusionRuntimeOptions? RuntimeOptions { get; set; }

    /// <summary>How many generations run at once (default 1: one per device, as the UNet already uses every core).</summary>
    public int MaxConcurrency { get; set; } = 1;

    /// <summary>How many requests may wait for a free slot (default 16); beyond it a request is answered 429 with <c>Retry-After</c>.</summary>
    public int MaxQueueLength { get; set; } = 16;

    /// <summary>The <c>Retry-After</c> a 429 carries, in seconds (default 5).</summary>
    public int RetryAfterSeconds { get; set; } = 5;

    /// <summary>The largest request body in bytes (default 16 MiB; a base64 512×512 PNG is about 0.5 MiB); larger: 413.</summary>
    public long MaxRequestBodyBytes { get; set; } = 16L << 20;

    /// <summary>The most pixels one generated image may have, width × height (default 1024 × 1024).</summary>
    public long MaxImagePixels { get; set; } = 1024L * 1024;

    /// <summary>The most inference steps one request may ask for (default 150, A1111's slider maximum).</summary>
    public int MaxSteps { get; set; } = 150;

    /// <summary>The most images one request may ask for: OpenAI's <c>n</c>, A1111's <c>batch_size</c> × <c>n_iter</c> (default 8).</summary>
    public int MaxImagesPerRequest { get; set; } = 8;

    /// <summary>The most images generated in one UNet batch (default 4); a request for more runs in several batches, which
    /// does not change any image (an image depends only on its seed).</summary>
    public int MaxBatchSize { get; set; } = 4;

    /// <summary>Whether every model is loaded when the host starts (default true): a folder that does not load stops the
    /// start with its message. False: each loads on its first request.</summary>
    public bool LoadModelsAtStartup { get; set; } = true;

    /// <summary>Whether the web page is served at <c>/</c> (default true).</summary>
    public bool ServeWebPage { get; set; } = true;
}
