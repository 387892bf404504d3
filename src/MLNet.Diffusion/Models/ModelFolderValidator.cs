using System.Text.Json;

namespace MLNet.Diffusion.Models;

/// <summary>
/// The checks a model folder passes before anything in it is loaded, so that a folder downloaded from the internet
/// cannot make the library read outside it or allocate without bound, and a damaged one fails with a message that
/// names the file and the problem. <see cref="DiffusionModelFolder.Open"/> runs them.
/// </summary>
/// <remarks>
/// <para><b>Paths.</b> No path taken from the folder is used unless it resolves inside the folder. Every file that is
/// read (the JSON configurations, the tokenizer files, each <c>.onnx</c> file and each external-data file it names)
/// is resolved through symbolic links and junctions, component by component as the operating system does, and must
/// end inside the folder's own resolved path. The folder itself may be named through links (a user's
/// <c>~/models → /data/models</c>, a link to a cache snapshot): its resolved path is the boundary. Hard links cannot be
/// told from ordinary files and are not examined.</para>
/// <para><b>The Hugging Face cache.</b> Its snapshots hold links such as
/// <c>models--org--name/snapshots/&lt;rev&gt;/unet/model.onnx → ../../../blobs/&lt;hash&gt;</c>, so one more root is
/// allowed when, and only when, all of these hold: (1) the folder's <i>resolved</i> path lies inside
/// <c>R/snapshots/&lt;rev&gt;/</c> for a folder <c>R</c> whose name starts with <c>models--</c> (the innermost such
/// <c>R</c>; a snapshot reached through a linked <c>snapshots/</c> or <c>&lt;rev&gt;</c> belongs to the repository it
/// really lies in, never to the one its given path names); (2) <c>R/blobs</c> is a real folder, not a symbolic link
/// or junction, wherever such a link would lead (to <c>/</c>, a parent, the cache root, another repository's blobs,
/// or through further links); (3) the resolved path of <c>R/blobs</c> is exactly the resolved path of <c>R</c>
/// followed by <c>/blobs</c>. The extra root is then <c>R/blobs</c> and nothing else: not the rest of <c>R</c>, not
/// another repository. A link into a <c>blobs</c> that fails (2) or (3) is refused, and the message says which
/// condition failed. Each file is still resolved to its end, so a blob that is itself a link out of <c>R/blobs</c>
/// is refused too.</para>
/// <para><b>Paths named in files.</b> ONNX external-data <c>location</c>s, wherever the ONNX file holds a tensor (see
/// <see cref="OnnxExternalDataScanner"/>), must be valid UTF-8, relative, without <c>..</c> segments, drive letters,
/// NUL characters or ONNX Runtime's in-memory marker, given once per tensor, and must name an existing file that
/// resolves, through any links, inside the folder (or the cache blobs root above) and whose size covers every
/// tensor's <c>offset</c> + <c>length</c>. These checks are the library's own: ONNX Runtime never opens a folder that
/// fails them. In <c>model_index.json</c>, component entries (keys not starting with <c>_</c>) must not name absolute
/// paths or paths with <c>..</c>; the same holds for <c>vocab_file</c>, <c>merges_file</c> and <c>tokenizer_file</c> in
/// the tokenizer's configuration. The library never opens any path written in a JSON file (components are always
/// <c>&lt;component&gt;/model.onnx</c>); informational keys such as <c>_name_or_path</c>, <c>name_or_path</c> and
/// <c>special_tokens_map_file</c>, which exporters fill with paths on their own machine, are ignored.</para>
/// <para><b>Sizes.</b> JSON configuration files may be at most <see cref="MaxConfigBytes"/>, tokenizer vocabularies and
/// merges at most <see cref="MaxTokenizerFileBytes"/>; no required file may be empty. Declared graph inputs and outputs
/// may have no fixed dimension above <see cref="MaxDeclaredDimension"/> nor more than <see cref="MaxDeclaredElements"/>
/// elements, and a UNet or VAE decoder that fixes its latent height or width above <see cref="MaxLatentSize"/> (images
/// are at most 4096 pixels) is refused. Configuration values are checked for range: <c>scaling_factor</c> in
/// (0, <see cref="MaxScalingFactor"/>], <c>sample_size</c> from 1 to <see cref="MaxLatentSize"/>, and the scheduler's
/// <c>steps_offset</c> from 0 to <c>num_train_timesteps</c> − 1 (the scheduler classes check the rest when the pipeline
/// loads, before any session is created).</para>
/// <para><b>Not covered.</b> A folder that changes while it is being opened, and graphs whose operators compute huge
/// shapes at run time from constants, are outside these checks.</para>
/// </remarks>
internal static class ModelFolderValidator
{
    /// <summary>The largest JSON configuration file read (1 MiB; real ones are a few kilobytes).</summary>
    public const long MaxConfigBytes = 1L << 20;

    /// <summary>The largest <c>vocab.json</c> or <c>merges.txt</c> read (64 MiB; CLIP's are about 1 MB and 0.5 MB).</summary>
    public const long MaxTokenizerFileBytes = 64L << 20;

    /// <summary>The largest fixed dimension a graph input or output may declare.</summary>
    public const long MaxDeclaredDimension = 65_536;

    /// <summary>The most elements a graph input or output may declare by its fixed dimensions.</summary>
    public const long MaxDeclaredElements = int.MaxValue;

    /// <summary>The largest latent height or width (4096 pixels ÷ 8), for <c>sample_size</c> and fixed UNet/VAE sizes.</summary>
    public const int MaxLatentSize = 512;

    /// <summary>The largest VAE <c>scaling_factor</c> accepted (SD uses 0.18215, SDXL 0.13025, SD3 1.5305).</summary>
    public const float MaxScalingFactor = 10f;

    /// <summary>model_index.json: component entries must not name paths that leave the folder.</summary>
    internal static void CheckIndex(JsonElement root, string path)
    {
        if (root.ValueKind != JsonValueKind.Object)
            throw new InvalidDataException($"'{path}' must hold a JSON object, found {root.ValueKind}.");
        foreach (var property in root.EnumerateObject())
        {
            if (property.Name.StartsWith('_')) continue; // _class_name, _diffusers_version, _name_or_path: metadata, never opened
            foreach (var text in Strings(property.Value))
                if (EscapingPathProblem(text) is { } problem)
                    throw new InvalidDataException($"'{path}': entry '{property.Name}' names the path '{OnnxExternalDataScanner.Shorten(text)}', which {problem}. Components are read only from their own sub-folders; this folder was not made by a diffusers export.");
        }
    }

    /// <summary>tokenizer_config.json / special_tokens_map.json: file-name keys must not leave the folder.</summary>
    internal static void CheckTokenizerConfig(JsonElement root, string path)
    {
        if (root.ValueKind != JsonValueKind.Object) return; // the tokenizer reader reports it
        foreach (var key in (ReadOnlySpan<string>)["vocab_file", "merges_file", "tokenizer_file"])
            if (root.TryGetProperty(key, out var value) && value.ValueKind == JsonValueKind.String
                && EscapingPathProblem(value.GetString()!) is { } problem)
                throw new InvalidDataException($"'{path}': {key} names the path '{OnnxExternalDataScanner.Shorten(value.GetString()!)}', which {problem}. The tokenizer is read only from its own folder.");
    }

    /// <summary>The scheduler's steps_offset must leave timesteps inside the training schedule.</summary>
    internal static void CheckSchedulerConfig(Schedulers.SchedulerConfig config)
    {
        int trainSteps = config.GetInt("num_train_timesteps", 1000);
        if (trainSteps < 2) return; // the scheduler class reports num_train_timesteps itself
        int offset = config.GetInt("steps_offset", 0);
        if (offset < 0 || offset >= Math.Max(trainSteps, 1))
            throw new InvalidDataException($"Scheduler configuration '{config.Source}': steps_offset is {offset}, expected an integer from 0 to num_train_timesteps − 1 ({trainSteps - 1}).");
    }

    /// <summary>
    /// An ONNX component: structure readable, external data inside the folder and in bounds, declared sizes sane.
    /// </summary>
    internal static OnnxModelSummary CheckOnnx(string onnxPath, string component, ModelFolderPaths paths)
    {
        paths.CheckFile(onnxPath, long.MaxValue, $"{component} model");
        var summary = OnnxExternalDataScanner.Scan(onnxPath);
        var directory = Path.GetDirectoryName(onnxPath)!;
        var sizes = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var reference in summary.ExternalData)
        {
            string what = $"'{paths.Relative(onnxPath)}': tensor '{reference.TensorName}' keeps its data in '{OnnxExternalDataScanner.Shorten(reference.Location)}'";
            if (ExternalLocationProblem(reference.Location) is { } problem)
                throw new InvalidDataException($"{what}, which {problem}. External data must be a file beside the model inside the model folder.");
            string full = Path.GetFullPath(Path.Combine(directory, reference.Location));
            if (!paths.IsLexicallyInside(full))
                throw new InvalidDataException($"{what}, which resolves outside the model folder '{paths.Root}'.");
            if (!sizes.TryGetValue(full, out long size))
            {
                // Where it leads is checked before whether it exists, so a link out is reported as one.
                paths.CheckInside(full);
                if (!File.Exists(full))
                    throw new FileNotFoundException($"{what}, which does not exist. The export is incomplete: download the file '{paths.Relative(full)}' too.", full);
                size = paths.CheckFile(full, long.MaxValue, "external data file");
                sizes[full] = size;
            }
            long needed = reference.Length ?? reference.ExpectedBytes ?? 0;
            if (reference.Length is long given && reference.ExpectedBytes is long expected && given != expected)
                throw new InvalidDataException($"{what} with length {given}, but its type and dimensions need {expected} bytes. The model file is corrupt.");
            if (reference.Offset > size || needed > size - reference.Offset)
                throw new InvalidDataException($"{what} at bytes {reference.Offset} to {reference.Offset + needed}, but that file has only {size} bytes: it is truncated or belongs to another model. Download it again.");
        }
        CheckDeclaredSizes(onnxPath, component, summary, paths);
        return summary;
    }

    private static void CheckDeclaredSizes(string onnxPath, string component, OnnxModelSummary summary, ModelFolderPaths paths)
    {
        foreach (var (kind, list) in new[] { ("input", summary.Inputs), ("output", summary.Outputs) })
        {
            foreach (var tensor in list)
            {
                long elements = 1;
                foreach (var d in tensor.Dimensions)
                {
                    if (d <= 0) continue;
                    if (d > MaxDeclaredDimension)
                        throw new InvalidDataException($"'{paths.Relative(onnxPath)}' declares {kind} '{tensor.Name}' as {Describe(tensor.Dimensions)}: a dimension of {d} is above the {MaxDeclaredDimension} accepted. The {component} model is corrupt or not a Stable Diffusion component; it is refused before anything is allocated.");
                    elements = elements > MaxDeclaredElements / d ? MaxDeclaredElements + 1 : elements * d;
                }
                if (elements > MaxDeclaredElements)
                    throw new InvalidDataException($"'{paths.Relative(onnxPath)}' declares {kind} '{tensor.Name}' as {Describe(tensor.Dimensions)}, more than {MaxDeclaredElements} elements. The {component} model is refused before anything is allocated.");
            }
        }
        string? latentInput = component switch { "unet" => "sample", "vae_decoder" => "latent_sample", _ => null };
        int limit = MaxLatentSize;
        if (component == "vae_encoder") { latentInput = "sample"; limit = MaxLatentSize * 8; }
        if (latentInput is null) return;
        foreach (var tensor in summary.Inputs)
            if (tensor.Name == latentInput && tensor.Dimensions.Length == 4 && (tensor.Dimensions[2] > limit || tensor.Dimensions[3] > limit))
                throw new InvalidDataException($"'{paths.Relative(onnxPath)}' fixes {latentInput} to {Describe(tensor.Dimensions)}, larger than the {limit}×{limit} that images of at most 4096×4096 pixels need.");
    }

    private static string Describe(long[] dims) => $"[{string.Join(", ", dims.Select(d => d < 0 ? "?" : d.ToString(System.Globalization.CultureInfo.InvariantCulture)))}]";

    /// <summary>Why a path written in a file would leave the folder, or null when it would not.</summary>
    internal static string? EscapingPathProblem(string text)
    {
        if (text.Contains('\0')) return "contains a NUL character";
        if (IsRooted(text)) return "is absolute";
        foreach (var segment in text.Split('/', '\\'))
            if (segment == "..") return "climbs out with '..'";
        return null;
    }

    /// <summary>Why an external-data location is not acceptable, or null.</summary>
    internal static string? ExternalLocationProblem(string location)
    {
        if (location.Length == 0) return "is empty";
        if (location.Contains("_ORT_MEM_ADDR_", StringComparison.Ordinal)) return "is ONNX Runtime's in-memory marker (it would read process memory)";
        if (EscapingPathProblem(location) is { } problem) return problem;
        if (location.Contains(':')) return "contains ':' (a drive letter or alternate data stream)";
        return null;
    }

    private static bool IsRooted(string text) =>
        text.StartsWith('/') || text.StartsWith('\\') || (text.Length >= 2 && char.IsAsciiLetter(text[0]) && text[1] == ':') || Path.IsPathRooted(text);

    private static IEnumerable<string> Strings(JsonElement value)
    {
        switch (value.ValueKind)
        {
            case JsonValueKind.String:
                yield return value.GetString()!;
                break;
            case JsonValueKind.Array:
                foreach (var item in value.EnumerateArray())
                    foreach (var s in Strings(item)) yield return s;
                break;
            case JsonValueKind.Object:
                foreach (var p in value.EnumerateObject())
                    foreach (var s in Strings(p.Value)) yield return s;
                break;
        }
    }
}

/// <summary>
/// The folder's containment policy: its resolved root, the one other root that links may lead into (a Hugging Face
/// cache repository's <c>blobs/</c>, under the rule in <see cref="ModelFolderValidator"/>'s remarks), and the check
/// that a file resolves into one of them.
/// </summary>
internal sealed class ModelFolderPaths
{
    private static readonly StringComparison s_pathComparison =
        OperatingSystem.IsWindows() || OperatingSystem.IsMacOS() ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal;

    private readonly string[] _allowedRealRoots;

    /// <summary>Why a Hugging Face cache repository's blobs folder was not accepted as a root, for messages; null otherwise.</summary>
    private readonly string? _cacheRefusal;

    public ModelFolderPaths(string root)
    {
        Root = root;
        RealRoot = RealPath(root);
        var allowed = new List<string> { RealRoot };
        if (CacheRepositoryOf(RealRoot) is { } repository)
        {
            _cacheRefusal = BlobsProblem(repository, out string blobs);
            if (_cacheRefusal is null) allowed.Add(blobs);
        }
        _allowedRealRoots = [.. allowed];
    }

    /// <summary>The folder as given (full path).</summary>
    public string Root { get; }

    /// <summary>The folder with every link resolved.</summary>
    public string RealRoot { get; }

    /// <summary>A path relative to the folder, for messages.</summary>
    public string Relative(string path) => Path.GetRelativePath(Root, path);

    /// <summary>Whether a full path is inside the folder without resolving links.</summary>
    public bool IsLexicallyInside(string fullPath) => IsWithin(fullPath, Root);

    /// <summary>
    /// The Hugging Face cache repository (<c>…/models--org--name</c>) whose <c>snapshots/&lt;rev&gt;</c> holds the
    /// folder, judged on the folder's resolved path (so the repository is the one the snapshot really lies in, whatever
    /// links the given path went through); the innermost match, or null.
    /// </summary>
    private static DirectoryInfo? CacheRepositoryOf(string realRoot)
    {
        for (var dir = new DirectoryInfo(realRoot); dir.Parent?.Parent is { } repository; dir = dir.Parent)
            if (string.Equals(dir.Parent.Name, "snapshots", StringComparison.Ordinal) && repository.Name.StartsWith("models--", StringComparison.Ordinal))
                return repository;
        return null;
    }

    /// <summary>
    /// Why <c>&lt;repository&gt;/blobs</c> may not be followed into, or null when it may: it must be a real folder (not a
    /// symbolic link or junction) whose resolved path is exactly the repository's resolved path + <c>/blobs</c>.
    /// </summary>
    private static string? BlobsProblem(DirectoryInfo repository, out string blobs)
    {
        // The repository path comes from a resolved path, so each of its components is already real.
        blobs = Path.Join(repository.FullName, "blobs");
        string shown = Path.Join(repository.Name, "blobs");
        var info = new DirectoryInfo(blobs);
        string? target;
        try
        {
            target = info.LinkTarget;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return $"'{shown}' cannot be examined ({e.Message})";
        }
        if (target is not null)
            return $"'{shown}' is a symbolic link (to '{target}'), not a folder inside the repository";
        if (!info.Exists)
            return File.Exists(blobs) ? $"'{shown}' is a file, not a folder" : $"the repository has no '{shown}' folder";
        string real = RealPath(blobs);
        if (!string.Equals(real, blobs, s_pathComparison))
            return $"'{shown}' resolves to '{real}', not to itself";
        return null;
    }

    /// <summary>
    /// Checks that a path resolves (through links) inside the folder or the allowed cache root, whether or not it
    /// exists; returns the resolved path.
    /// </summary>
    /// <exception cref="InvalidDataException">It resolves elsewhere; the message names the path and where it leads.</exception>
    public string CheckInside(string path)
    {
        string real = RealPath(path);
        if (!_allowedRealRoots.Any(root => IsWithin(real, root)))
            throw new InvalidDataException($"'{Relative(path)}' in model folder '{Root}' is a link that resolves to '{real}', outside the folder. " +
                "Links are followed only within the folder (and, in a Hugging Face cache snapshot, into that repository's own blobs/ folder)" +
                (_cacheRefusal is null ? "" : $"; this snapshot's blobs/ is not followed because {_cacheRefusal}") +
                (string.Equals(RealRoot, Path.TrimEndingDirectorySeparator(Root), s_pathComparison) ? "" : $"; the folder itself resolves to '{RealRoot}'") +
                ". Copy the file into the folder instead.");
        return real;
    }

    /// <summary>
    /// Checks a file that will be read: it resolves (through links) inside the folder or an allowed cache root, is a
    /// file, is not empty and is at most <paramref name="maxBytes"/>. Returns its size.
    /// </summary>
    public long CheckFile(string path, long maxBytes, string what)
    {
        string real = CheckInside(path);
        var info = new FileInfo(real);
        if (!info.Exists)
            throw new InvalidDataException(Directory.Exists(real)
                ? $"'{Relative(path)}' in model folder '{Root}' is a folder, not a file (expected the {what})."
                : $"'{Relative(path)}' in model folder '{Root}' is a link to '{real}', which does not exist (expected the {what}).");
        if (info.Length == 0)
            throw new InvalidDataException($"'{Relative(path)}' in model folder '{Root}' is empty (0 bytes); expected the {what}. The download or export may have failed.");
        if (info.Length > maxBytes)
            throw new InvalidDataException($"'{Relative(path)}' in model folder '{Root}' is {info.Length} bytes; a {what} is at most {maxBytes} bytes. It is refused rather than read.");
        return info.Length;
    }

    private static bool IsWithin(string path, string root)
    {
        if (string.Equals(path, root, s_pathComparison)) return true;
        var prefix = Path.EndsInDirectorySeparator(root) ? root : root + Path.DirectorySeparatorChar;
        return path.StartsWith(prefix, s_pathComparison);
    }

    /// <summary>
    /// The path with every symbolic link (and junction) resolved, component by component, as the operating system
    /// resolves it (a '..' after a link climbs from the link's target). Missing components are kept as written.
    /// </summary>
    /// <exception cref="InvalidDataException">More than 40 links are followed (a loop).</exception>
    internal static string RealPath(string path)
    {
        var full = Path.GetFullPath(path);
        string current = Path.GetPathRoot(full)!;
        var pending = new Stack<string>(Split(full[current.Length..]).Reverse());
        int hops = 0;
        while (pending.Count > 0)
        {
            string part = pending.Pop();
            if (part is "" or ".") continue;
            if (part == "..")
            {
                current = Path.GetDirectoryName(current) ?? current;
                continue;
            }
            string next = Path.Join(current, part);
            string? target;
            try
            {
                target = new FileInfo(next).LinkTarget;
            }
            catch (IOException)
            {
                target = null;
            }
            catch (UnauthorizedAccessException)
            {
                target = null;
            }
            if (target is null)
            {
                current = next;
                continue;
            }
            if (++hops > 40)
                throw new InvalidDataException($"'{path}' goes through more than 40 symbolic links (a loop?).");
            if (Path.IsPathRooted(target))
            {
                string targetRoot = Path.GetPathRoot(target)!;
                current = targetRoot;
                target = target[targetRoot.Length..];
            }
            foreach (var p in Split(target).Reverse()) pending.Push(p);
        }
        return current;
    }

    private static IEnumerable<string> Split(string relative) =>
        relative.Split(OperatingSystem.IsWindows() ? ['\\', '/'] : ['/'], StringSplitOptions.RemoveEmptyEntries);
}
