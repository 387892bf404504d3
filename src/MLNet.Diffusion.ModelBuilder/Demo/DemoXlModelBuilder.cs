using System.Globalization;
using System.Text;
using System.Text.Json;

namespace MLNet.Diffusion.ModelBuilder.Demo;

/// <summary>
/// Writes the demo XL model: the demo model's SDXL-layout sibling, a complete Stable Diffusion XL ONNX folder (Optimum's
/// layout) made from code, drawing the same 256×256 pictures as <see cref="DemoModelBuilder"/>'s model through SDXL's
/// conditioning: two tokenizers and text encoders, the penultimate hidden states concatenated, the pooled
/// <c>text_embeds</c> and the <c>time_ids</c>.
/// </summary>
/// <remarks>
/// <para>The folder holds <c>model_index.json</c> (StableDiffusionXLPipeline, <c>force_zeros_for_empty_prompt</c>);
/// <c>scheduler/scheduler_config.json</c> (EulerDiscreteScheduler, as SDXL, with the demo's own schedule);
/// <c>tokenizer/</c> (the demo's CLIP vocabulary, padded with <c>&lt;|endoftext|&gt;</c>) and <c>tokenizer_2/</c> (the same
/// vocabulary padded with <c>!</c>, id 0, as SDXL's second tokenizer); <c>text_encoder/</c> and <c>text_encoder_2/</c>
/// (<see cref="DemoXlTextEncoder"/>); <c>unet/</c> (<see cref="DemoXlUnet"/>); <c>vae_encoder/</c> and <c>vae_decoder/</c>
/// (<see cref="DemoVae"/>, the demo's scaling factor); a README and the version stamp
/// <see cref="DemoModelBuilder.StampFile"/>. Building is deterministic: the same builder version gives the same bytes.</para>
/// </remarks>
public static class DemoXlModelBuilder
{
    /// <summary>The builder version, written to the stamp file; bump it whenever the model's bytes change.</summary>
    public const string Version = "demo-xl-1";

    private const string Description = "the demo XL model";

    /// <summary>The text of the version stamp (in <see cref="DemoModelBuilder.StampFile"/>).</summary>
    public static string StampText => $"MLNet.Diffusion demo XL model, builder {Version}\n";

    /// <summary>Whether <paramref name="directory"/> holds a demo XL model built by this builder version.</summary>
    public static bool IsCurrent(string directory) => DemoFolder.IsCurrent(directory, StampText);

    /// <summary>
    /// Builds the demo XL model into <paramref name="directory"/> unless it already holds one built by this builder
    /// version. Safe to call from several threads or processes at once (they wait for one another).
    /// </summary>
    /// <returns>True when it built the model; false when the folder was already current.</returns>
    public static bool EnsureBuilt(string directory) => DemoFolder.EnsureBuilt(directory, StampText, Description, WriteModel);

    /// <summary>
    /// Builds the demo XL model into <paramref name="outputDirectory"/>, written into a temporary sibling folder and then
    /// renamed into place. An existing folder is replaced only when it is empty or holds a demo model (either kind, any
    /// version).
    /// </summary>
    /// <exception cref="IOException">The folder exists, is not empty and is not a demo model.</exception>
    public static void Build(string outputDirectory) => DemoFolder.Build(outputDirectory, Description, WriteModel);

    private static void WriteModel(string dir)
    {
        Directory.CreateDirectory(dir);
        var table = DemoLatentTable.Create();
        var captions = DemoUnet.CaptionEmbeddings();

        DemoXlTextEncoder.First.BuildGraph().Save(Path.Combine(dir, "text_encoder", "model.onnx"));
        DemoXlTextEncoder.Second.BuildGraph().Save(Path.Combine(dir, "text_encoder_2", "model.onnx"));
        DemoXlUnet.BuildGraph(table, captions).Save(Path.Combine(dir, "unet", "model.onnx"));
        DemoVae.BuildEncoderGraph().Save(Path.Combine(dir, "vae_encoder", "model.onnx"));
        DemoVae.BuildDecoderGraph().Save(Path.Combine(dir, "vae_decoder", "model.onnx"));
        ClipVocabularyWriter.Write(Path.Combine(dir, "tokenizer"));
        ClipVocabularyWriter.Write(Path.Combine(dir, "tokenizer_2"), ClipVocabularyWriter.ExclamationPad);

        const string note = "MLNet.Diffusion built-in demo XL model: hand-designed, not trained; see README.md in the model folder.";
        DemoJson.Write(Path.Combine(dir, "model_index.json"), w =>
        {
            w.WriteStartObject();
            w.WriteString("_class_name", "StableDiffusionXLPipeline");
            w.WriteString("_mlnet_demo", note);
            w.WriteBoolean("force_zeros_for_empty_prompt", true);
            DemoFolder.WritePair(w, "scheduler", "diffusers", "EulerDiscreteScheduler");
            DemoFolder.WritePair(w, "text_encoder", "diffusers", "OnnxRuntimeModel");
            DemoFolder.WritePair(w, "text_encoder_2", "diffusers", "OnnxRuntimeModel");
            DemoFolder.WritePair(w, "tokenizer", "transformers", "CLIPTokenizer");
            DemoFolder.WritePair(w, "tokenizer_2", "transformers", "CLIPTokenizer");
            DemoFolder.WritePair(w, "unet", "diffusers", "OnnxRuntimeModel");
            DemoFolder.WritePair(w, "vae_decoder", "diffusers", "OnnxRuntimeModel");
            DemoFolder.WritePair(w, "vae_encoder", "diffusers", "OnnxRuntimeModel");
            w.WriteEndObject();
        });

        Directory.CreateDirectory(Path.Combine(dir, "scheduler"));
        DemoJson.Write(Path.Combine(dir, "scheduler", "scheduler_config.json"), w =>
        {
            w.WriteStartObject();
            w.WriteString("_class_name", "EulerDiscreteScheduler");
            DemoFolder.WriteScheduleKeys(w);
            w.WriteString("interpolation_type", "linear");
            w.WriteBoolean("use_karras_sigmas", false);
            w.WriteEndObject();
        });

        int vocabSize = ClipVocabularyWriter.Tokens().Count;
        DemoFolder.WriteClipConfig(Path.Combine(dir, "text_encoder", "config.json"), note, DemoXlTextEncoder.First, "CLIPTextModel", vocabSize - 1);
        DemoFolder.WriteClipConfig(Path.Combine(dir, "text_encoder_2", "config.json"), note, DemoXlTextEncoder.Second, "CLIPTextModelWithProjection",
            ClipVocabularyWriter.TokenId(ClipVocabularyWriter.ExclamationPad));

        DemoJson.Write(Path.Combine(dir, "unet", "config.json"), w =>
        {
            w.WriteStartObject();
            w.WriteString("_class_name", "UNet2DConditionModel");
            w.WriteString("_mlnet_demo", note + " Exact posterior-mean denoiser over the 600 demo images; takes 32×32 latents only.");
            w.WriteString("addition_embed_type", "text_time");
            w.WriteNumber("addition_time_embed_dim", DemoXlUnet.AdditionTimeEmbedDim);
            w.WriteNumber("cross_attention_dim", DemoXlUnet.ContextDimension);
            w.WriteNumber("in_channels", DemoVae.LatentChannels);
            w.WriteNumber("out_channels", DemoVae.LatentChannels);
            w.WriteNumber("projection_class_embeddings_input_dim", DemoXlUnet.PooledDimension + DemoXlUnet.TimeIdCount * DemoXlUnet.AdditionTimeEmbedDim);
            w.WriteNumber("sample_size", DemoUnet.LatentSize);
            w.WriteEndObject();
        });

        // The graphs are single precision throughout, so nothing needs upcasting.
        DemoFolder.WriteVaeConfigs(dir, note, forceUpcast: false);

        DemoFolder.WriteText(Path.Combine(dir, "README.md"), Readme());
        // Last: a folder with this stamp is complete.
        DemoFolder.WriteText(Path.Combine(dir, DemoModelBuilder.StampFile), StampText);
    }

    private static string Readme()
    {
        var s = new StringBuilder();
        s.Append("# MLNet.Diffusion demo XL model\n\n");
        s.Append("The built-in demo model's Stable Diffusion XL-layout sibling, built by code (`dotnet run --project\n");
        s.Append("src/MLNet.Diffusion.ModelBuilder -- demo-xl --out <dir>`), builder version ").Append(Version)
            .Append(". It draws the demo model's pictures\n");
        s.Append("(").Append(DemoDataset.Items.Count.ToString(CultureInfo.InvariantCulture))
            .Append(" images of coloured shapes, 256×256, latents 4×32×32) through SDXL's conditioning. Not trained.\n\n");
        s.Append("- `text_encoder/` (").Append(DemoXlTextEncoder.First.Layers.ToString(CultureInfo.InvariantCulture))
            .Append(" layers) carries the shape and colour, `text_encoder_2/` (")
            .Append(DemoXlTextEncoder.Second.Layers.ToString(CultureInfo.InvariantCulture))
            .Append(" layers) the size and place,\n  and its pooled `text_embeds` the background. Only the penultimate hidden states carry the words;\n");
        s.Append("  the last layer (and `last_hidden_state`) is their negation, earlier layers have their slots shifted.\n");
        s.Append("- The UNet (inputs `sample`, `timestep`, `encoder_hidden_states` [B, 77, ")
            .Append(DemoXlUnet.ContextDimension.ToString(CultureInfo.InvariantCulture)).Append("], `text_embeds` [B, ")
            .Append(DemoXlUnet.PooledDimension.ToString(CultureInfo.InvariantCulture)).Append("], `time_ids` [B, 6])\n");
        s.Append("  is the exact posterior-mean denoiser of the dataset with a prior from the prompt: the two penultimate\n");
        s.Append("  hidden states concatenated and the pooled embedding, weighted by r = min(1, original height / target height) ·\n");
        s.Append("  min(1, original width / target width) from `time_ids`, so a small original size loosens the prompt's hold.\n");
        s.Append("  Crop coordinates are accepted and have no effect. Zero embeddings (an empty negative prompt) give the\n");
        s.Append("  uniform prior, so classifier-free guidance works.\n");
        s.Append("- `tokenizer_2/` pads with `!` (id 0), like SDXL's; both tokenizers share the demo vocabulary.\n");
        s.Append("- The VAE and the schedule are the demo model's: scaling factor ")
            .Append(((double)(decimal)DemoVae.ScalingFactor).ToString(CultureInfo.InvariantCulture))
            .Append(", scaled_linear β from ")
            .Append(DemoUnet.BetaStart.ToString(CultureInfo.InvariantCulture)).Append(" to ")
            .Append(DemoUnet.BetaEnd.ToString(CultureInfo.InvariantCulture))
            .Append(" (SDXL's 0.012 raised so that the samplers'\n  start, pure noise, is the true distribution of noised latents at the first step), EulerDiscreteScheduler as SDXL.\n");
        return s.ToString();
    }
}
