using System.Globalization;
using System.Text;
using System.Text.Json;

namespace MLNet.Diffusion.ModelBuilder.Demo;

/// <summary>
/// Writes the demo flow model: the demo model's flow-matching sibling, a complete Stable Diffusion 3 ONNX folder (Optimum's
/// layout) made from code, drawing the same 256×256 pictures as <see cref="DemoModelBuilder"/>'s model through SD3's
/// contract: three tokenizers and text encoders (two CLIPs and a T5), a transformer that predicts the flow-matching velocity,
/// a 16-channel VAE with a shift factor and FlowMatchEulerDiscreteScheduler.
/// </summary>
/// <remarks>
/// <para>The folder holds <c>model_index.json</c> (StableDiffusion3Pipeline); <c>scheduler/scheduler_config.json</c>
/// (FlowMatchEulerDiscreteScheduler, <c>shift</c> 3.0 as SD3); <c>tokenizer/</c> and <c>tokenizer_2/</c> (the demo's CLIP
/// vocabulary, the second padded with <c>!</c>) with <c>text_encoder/</c> and <c>text_encoder_2/</c>
/// (<see cref="DemoFlowTextEncoders"/>); <c>tokenizer_3/</c> (a Unigram <c>tokenizer.json</c>) with <c>text_encoder_3/</c>
/// (<see cref="DemoT5TextEncoder"/>); <c>transformer/</c> (<see cref="DemoFlowTransformer"/>); <c>vae_encoder/</c> and
/// <c>vae_decoder/</c> (<see cref="DemoFlowVae"/>); a README and the version stamp <see cref="DemoModelBuilder.StampFile"/>.
/// Building is deterministic: the same builder version gives the same bytes.</para>
/// </remarks>
public static class DemoFlowModelBuilder
{
    /// <summary>The builder version, written to the stamp file; bump it whenever the model's bytes change.</summary>
    public const string Version = "demo-flow-1";

    /// <summary>The scheduler's <c>shift</c>, Stable Diffusion 3's.</summary>
    public const double Shift = 3.0;

    /// <summary>The T5 tokenizer's <c>model_max_length</c>.</summary>
    public const int T5ModelMaxLength = 512;

    private const string Description = "the demo flow model";

    /// <summary>The text of the version stamp (in <see cref="DemoModelBuilder.StampFile"/>).</summary>
    public static string StampText => $"MLNet.Diffusion demo flow model, builder {Version}\n";

    /// <summary>Whether <paramref name="directory"/> holds a demo flow model built by this builder version.</summary>
    public static bool IsCurrent(string directory) => DemoFolder.IsCurrent(directory, StampText);

    /// <summary>
    /// Builds the demo flow model into <paramref name="directory"/> unless it already holds one built by this builder
    /// version. Safe to call from several threads or processes at once (they wait for one another).
    /// </summary>
    /// <returns>True when it built the model; false when the folder was already current.</returns>
    public static bool EnsureBuilt(string directory) => DemoFolder.EnsureBuilt(directory, StampText, Description, WriteModel);

    /// <summary>
    /// Builds the demo flow model into <paramref name="outputDirectory"/>, written into a temporary sibling folder and then
    /// renamed into place. An existing folder is replaced only when it is empty or holds a demo model (any kind or version).
    /// </summary>
    /// <exception cref="IOException">The folder exists, is not empty and is not a demo model.</exception>
    public static void Build(string outputDirectory) => DemoFolder.Build(outputDirectory, Description, WriteModel);

    private static void WriteModel(string dir)
    {
        Directory.CreateDirectory(dir);
        var table = DemoLatentTable.Create();
        var captions = DemoUnet.CaptionEmbeddings();

        DemoFlowTextEncoders.ClipL.BuildGraph().Save(Path.Combine(dir, "text_encoder", "model.onnx"));
        DemoFlowTextEncoders.ClipG.BuildGraph().Save(Path.Combine(dir, "text_encoder_2", "model.onnx"));
        DemoT5TextEncoder.BuildGraph().Save(Path.Combine(dir, "text_encoder_3", "model.onnx"));
        DemoFlowTransformer.BuildGraph(table, captions).Save(Path.Combine(dir, "transformer", "model.onnx"));
        DemoFlowVae.BuildEncoderGraph().Save(Path.Combine(dir, "vae_encoder", "model.onnx"));
        DemoFlowVae.BuildDecoderGraph().Save(Path.Combine(dir, "vae_decoder", "model.onnx"));
        ClipVocabularyWriter.Write(Path.Combine(dir, "tokenizer"));
        ClipVocabularyWriter.Write(Path.Combine(dir, "tokenizer_2"), ClipVocabularyWriter.ExclamationPad);
        DemoT5TextEncoder.WriteTokenizer(Path.Combine(dir, "tokenizer_3"), T5ModelMaxLength);

        const string note = "MLNet.Diffusion built-in demo flow model: hand-designed, not trained; see README.md in the model folder.";
        DemoJson.Write(Path.Combine(dir, "model_index.json"), w =>
        {
            w.WriteStartObject();
            w.WriteString("_class_name", "StableDiffusion3Pipeline");
            w.WriteString("_mlnet_demo", note);
            DemoFolder.WritePair(w, "scheduler", "diffusers", "FlowMatchEulerDiscreteScheduler");
            DemoFolder.WritePair(w, "text_encoder", "diffusers", "OnnxRuntimeModel");
            DemoFolder.WritePair(w, "text_encoder_2", "diffusers", "OnnxRuntimeModel");
            DemoFolder.WritePair(w, "text_encoder_3", "diffusers", "OnnxRuntimeModel");
            DemoFolder.WritePair(w, "tokenizer", "transformers", "CLIPTokenizer");
            DemoFolder.WritePair(w, "tokenizer_2", "transformers", "CLIPTokenizer");
            DemoFolder.WritePair(w, "tokenizer_3", "transformers", "T5TokenizerFast");
            DemoFolder.WritePair(w, "transformer", "diffusers", "OnnxRuntimeModel");
            DemoFolder.WritePair(w, "vae_decoder", "diffusers", "OnnxRuntimeModel");
            DemoFolder.WritePair(w, "vae_encoder", "diffusers", "OnnxRuntimeModel");
            w.WriteEndObject();
        });

        Directory.CreateDirectory(Path.Combine(dir, "scheduler"));
        DemoJson.Write(Path.Combine(dir, "scheduler", "scheduler_config.json"), w =>
        {
            w.WriteStartObject();
            w.WriteString("_class_name", "FlowMatchEulerDiscreteScheduler");
            w.WriteNumber("num_train_timesteps", DemoFlowTransformer.TrainTimesteps);
            w.WriteNumber("shift", Shift);
            w.WriteEndObject();
        });

        const string projection = "CLIPTextModelWithProjection";
        DemoFolder.WriteClipConfig(Path.Combine(dir, "text_encoder", "config.json"), note, DemoFlowTextEncoders.ClipL, projection, ClipVocabularyWriter.Tokens().Count - 1);
        DemoFolder.WriteClipConfig(Path.Combine(dir, "text_encoder_2", "config.json"), note, DemoFlowTextEncoders.ClipG, projection,
            ClipVocabularyWriter.TokenId(ClipVocabularyWriter.ExclamationPad));
        DemoJson.Write(Path.Combine(dir, "text_encoder_3", "config.json"), w =>
        {
            w.WriteStartObject();
            w.WriteString("_mlnet_demo", note + " An embedding lookup: demo words carry their place, everything else zero.");
            w.WriteStartArray("architectures");
            w.WriteStringValue("T5EncoderModel");
            w.WriteEndArray();
            w.WriteNumber("d_model", DemoT5TextEncoder.Width);
            w.WriteNumber("eos_token_id", DemoT5TextEncoder.EosId);
            w.WriteString("model_type", "t5");
            w.WriteNumber("num_layers", 0);
            w.WriteNumber("pad_token_id", DemoT5TextEncoder.PadId);
            w.WriteNumber("vocab_size", DemoT5TextEncoder.Pieces().Count);
            w.WriteEndObject();
        });

        DemoJson.Write(Path.Combine(dir, "transformer", "config.json"), w =>
        {
            w.WriteStartObject();
            w.WriteString("_class_name", "SD3Transformer2DModel");
            w.WriteString("_mlnet_demo", note + " Exact flow-matching velocity of the 600 demo images' latents; takes 32×32 latents only.");
            w.WriteNumber("in_channels", DemoFlowVae.LatentChannels);
            w.WriteNumber("joint_attention_dim", DemoT5TextEncoder.Width);
            w.WriteNumber("out_channels", DemoFlowVae.LatentChannels);
            w.WriteNumber("pooled_projection_dim", DemoFlowTransformer.PooledDimension);
            w.WriteNumber("sample_size", DemoUnet.LatentSize);
            w.WriteEndObject();
        });

        DemoFolder.WriteVaeConfigs(dir, note, forceUpcast: false, latentChannels: DemoFlowVae.LatentChannels, shiftFactor: DemoFlowVae.ShiftFactor, quantConv: false);

        DemoFolder.WriteText(Path.Combine(dir, "README.md"), Readme());
        // Last: a folder with this stamp is complete.
        DemoFolder.WriteText(Path.Combine(dir, DemoModelBuilder.StampFile), StampText);
    }

    private static string Readme()
    {
        string Num(double v) => v.ToString(CultureInfo.InvariantCulture);
        var s = new StringBuilder();
        s.Append("# MLNet.Diffusion demo flow model\n\n");
        s.Append("The built-in demo model's flow-matching sibling in Stable Diffusion 3's layout, built by code, builder version ")
            .Append(Version).Append(".\nIt draws the demo model's pictures (")
            .Append(DemoDataset.Items.Count.ToString(CultureInfo.InvariantCulture))
            .Append(" images of coloured shapes, 256×256) through SD3's contract. Not trained.\n\n");
        s.Append("- `transformer/` (inputs `hidden_states` [B, 16, 32, 32], `encoder_hidden_states` [B, 77 + T, ")
            .Append(DemoT5TextEncoder.Width.ToString(CultureInfo.InvariantCulture)).Append("], `pooled_projections` [B, ")
            .Append(DemoFlowTransformer.PooledDimension.ToString(CultureInfo.InvariantCulture)).Append("], `timestep` = 1000·σ)\n");
        s.Append("  is the exact flow-matching velocity v = (x − E[x₀ | x, σ]) / σ of the dataset's latents, x = (1 − σ)·x₀ + σ·ε,\n");
        s.Append("  with the demo model's prior over the images from the prompt.\n");
        s.Append("- Each conditioning input carries part of the prompt: CLIP-L's penultimate states the shape, CLIP-G's the colour,\n");
        s.Append("  CLIP-L's `text_embeds` the size, CLIP-G's the background, T5 (`text_encoder_3/`) the place. Without T5 the\n");
        s.Append("  place is left to chance. Zero embeddings give the uniform prior, so classifier-free guidance works.\n");
        s.Append("- `tokenizer_3/tokenizer.json` is a SentencePiece Unigram tokenizer whose pieces are the demo words (lower case\n");
        s.Append("  and capitalised), spelling out other words letter by letter.\n");
        s.Append("- The VAE is the demo's with its 4 latent channels spread over 16 by a fixed orthonormal map (Hadamard columns / 4):\n");
        s.Append("  scaling factor ").Append(Num((double)(decimal)DemoVae.ScalingFactor)).Append(", shift factor ")
            .Append(Num((double)(decimal)DemoFlowVae.ShiftFactor)).Append(".\n");
        s.Append("- The scheduler is FlowMatchEulerDiscreteScheduler with shift ").Append(Num(Shift)).Append(", as Stable Diffusion 3.\n");
        return s.ToString();
    }
}
