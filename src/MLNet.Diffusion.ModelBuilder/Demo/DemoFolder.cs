using System.Text;
using System.Text.Json;

namespace MLNet.Diffusion.ModelBuilder.Demo;

/// <summary>
/// What the demo model builders share: writing a model folder atomically (a temporary sibling renamed into place),
/// building it once across threads and processes (an in-process gate plus a lock file), the version stamp, and the
/// config files both folders carry.
/// </summary>
internal static class DemoFolder
{
    private static readonly object Gate = new();

    /// <summary>Whether <paramref name="directory"/>'s stamp file holds exactly <paramref name="stampText"/>.</summary>
    public static bool IsCurrent(string directory, string stampText)
    {
        var stamp = Path.Combine(directory, DemoModelBuilder.StampFile);
        try
        {
            return File.Exists(stamp) && File.ReadAllText(stamp) == stampText;
        }
        catch (IOException)
        {
            return false;
        }
    }

    /// <summary>Builds with <paramref name="write"/> unless the folder is current; returns whether it built.</summary>
    public static bool EnsureBuilt(string directory, string stampText, string description, Action<string> write)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        var full = Path.GetFullPath(directory).TrimEnd(Path.DirectorySeparatorChar);
        if (IsCurrent(full, stampText)) return false;
        var parent = Path.GetDirectoryName(full) ?? throw new IOException($"Cannot build {description} into the root folder '{full}'.");
        lock (Gate)
        {
            Directory.CreateDirectory(parent);
            using var fileLock = AcquireLock(full + ".lock");
            if (IsCurrent(full, stampText)) return false;
            Build(full, description, write);
            return true;
        }
    }

    /// <summary>
    /// Writes the folder with <paramref name="write"/> into a temporary sibling and renames it into place; an existing
    /// folder is replaced only when it is empty or holds a demo model (it has the stamp file).
    /// </summary>
    public static void Build(string outputDirectory, string description, Action<string> write)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(outputDirectory);
        var full = Path.GetFullPath(outputDirectory).TrimEnd(Path.DirectorySeparatorChar);
        var parent = Path.GetDirectoryName(full) ?? throw new IOException($"Cannot build {description} into the root folder '{full}'.");
        var name = Path.GetFileName(full);
        if (File.Exists(full)) throw new IOException($"'{full}' is a file; {description} needs a folder.");
        if (Directory.Exists(full) && Directory.EnumerateFileSystemEntries(full).Any() && !File.Exists(Path.Combine(full, DemoModelBuilder.StampFile)))
            throw new IOException($"'{full}' is not empty and does not hold a demo model; choose a new or empty folder.");
        Directory.CreateDirectory(parent);
        var temp = Path.Combine(parent, $".{name}.building-{Guid.NewGuid():N}");
        try
        {
            write(temp);
            if (Directory.Exists(full))
            {
                var old = Path.Combine(parent, $".{name}.old-{Guid.NewGuid():N}");
                Directory.Move(full, old);
                Directory.Move(temp, full);
                Directory.Delete(old, recursive: true);
            }
            else
            {
                Directory.Move(temp, full);
            }
        }
        finally
        {
            if (Directory.Exists(temp)) Directory.Delete(temp, recursive: true);
        }
    }

    /// <summary>Writes UTF-8 text without a byte order mark.</summary>
    public static void WriteText(string path, string text) => File.WriteAllBytes(path, new UTF8Encoding(false).GetBytes(text));

    /// <summary>Writes a <c>model_index.json</c> entry: [library, class] (either may be null).</summary>
    public static void WritePair(Utf8JsonWriter w, string key, string? library, string? type)
    {
        w.WriteStartArray(key);
        if (library is null) w.WriteNullValue(); else w.WriteStringValue(library);
        if (type is null) w.WriteNullValue(); else w.WriteStringValue(type);
        w.WriteEndArray();
    }

    /// <summary>
    /// Writes <c>vae_encoder/config.json</c> and <c>vae_decoder/config.json</c> for <see cref="DemoVae"/> (or, with
    /// <paramref name="latentChannels"/>, <paramref name="shiftFactor"/> and <paramref name="quantConv"/>, its flow
    /// sibling), with <c>force_upcast</c> when <paramref name="forceUpcast"/> is given.
    /// </summary>
    /// <param name="dir">The model folder.</param>
    /// <param name="note">The demo note each config carries.</param>
    /// <param name="forceUpcast"><c>force_upcast</c>, written when given.</param>
    /// <param name="latentChannels"><c>latent_channels</c> (default <see cref="DemoVae.LatentChannels"/>).</param>
    /// <param name="shiftFactor"><c>shift_factor</c>, written when given.</param>
    /// <param name="quantConv"><c>use_post_quant_conv</c> and <c>use_quant_conv</c>, written when given.</param>
    public static void WriteVaeConfigs(string dir, string note, bool? forceUpcast = null, int latentChannels = DemoVae.LatentChannels,
        float? shiftFactor = null, bool? quantConv = null)
    {
        foreach (var part in new[] { "vae_encoder", "vae_decoder" })
        {
            DemoJson.Write(Path.Combine(dir, part, "config.json"), w =>
            {
                w.WriteStartObject();
                w.WriteString("_class_name", "AutoencoderKL");
                w.WriteString("_mlnet_demo", note + " block_out_channels only tells the 8× downsampling (2^(4 − 1)).");
                w.WriteStartArray("block_out_channels");
                foreach (var c in new[] { 128, 256, 512, 512 }) w.WriteNumberValue(c);
                w.WriteEndArray();
                if (forceUpcast is { } upcast) w.WriteBoolean("force_upcast", upcast);
                w.WriteNumber("in_channels", 3);
                w.WriteNumber("latent_channels", latentChannels);
                w.WriteNumber("out_channels", 3);
                w.WriteNumber("sample_size", DemoDataset.ImageSize);
                w.WriteNumber("scaling_factor", (double)(decimal)DemoVae.ScalingFactor);
                if (shiftFactor is { } shift) w.WriteNumber("shift_factor", (double)(decimal)shift);
                if (quantConv is { } quant)
                {
                    w.WriteBoolean("use_post_quant_conv", quant);
                    w.WriteBoolean("use_quant_conv", quant);
                }
                w.WriteEndObject();
            });
        }
    }

    /// <summary>
    /// Writes a CLIP text encoder's <c>config.json</c> for a <see cref="DemoXlTextEncoder"/> (the XL and flow demos'
    /// encoders): <paramref name="architecture"/> and the pad id as the folder's tokenizer pads.
    /// </summary>
    public static void WriteClipConfig(string path, string note, DemoXlTextEncoder encoder, string architecture, int padId)
    {
        int vocabSize = ClipVocabularyWriter.Tokens().Count;
        DemoJson.Write(path, w =>
        {
            w.WriteStartObject();
            w.WriteString("_mlnet_demo", note);
            w.WriteStartArray("architectures");
            w.WriteStringValue(architecture);
            w.WriteEndArray();
            w.WriteNumber("bos_token_id", vocabSize - 2);
            w.WriteNumber("eos_token_id", vocabSize - 1);
            w.WriteNumber("hidden_size", DemoXlTextEncoder.Dimension);
            w.WriteNumber("max_position_embeddings", ClipVocabularyWriter.MaxLength);
            w.WriteString("model_type", "clip_text_model");
            w.WriteNumber("num_hidden_layers", encoder.Layers);
            w.WriteNumber("pad_token_id", padId);
            w.WriteNumber("projection_dim", DemoXlTextEncoder.Dimension);
            w.WriteNumber("vocab_size", vocabSize);
            w.WriteEndObject();
        });
    }

    /// <summary>The demo schedule's keys shared by every scheduler config the builders write (β range, steps, spacing).</summary>
    public static void WriteScheduleKeys(Utf8JsonWriter w)
    {
        w.WriteNumber("beta_end", DemoUnet.BetaEnd);
        w.WriteString("beta_schedule", "scaled_linear");
        w.WriteNumber("beta_start", DemoUnet.BetaStart);
        w.WriteBoolean("clip_sample", false);
        w.WriteNumber("num_train_timesteps", DemoUnet.TrainTimesteps);
        w.WriteString("prediction_type", "epsilon");
        w.WriteBoolean("set_alpha_to_one", false);
        w.WriteBoolean("skip_prk_steps", true);
        w.WriteNumber("steps_offset", 1);
        w.WriteString("timestep_spacing", "leading");
        w.WriteNull("trained_betas");
    }

    private static FileStream AcquireLock(string path)
    {
        var deadline = DateTime.UtcNow.AddMinutes(5);
        while (true)
        {
            try
            {
                return new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None, 1, FileOptions.DeleteOnClose);
            }
            catch (IOException) when (DateTime.UtcNow < deadline)
            {
                Thread.Sleep(100);
            }
        }
    }
}
