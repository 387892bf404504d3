using System.Globalization;
using System.Text;

namespace MLNet.Diffusion.ModelBuilder.Demo;

/// <summary>
/// Writes the built-in demo model: a complete Stable Diffusion ONNX folder (diffusers/Optimum layout) made from code,
/// with no downloaded weights, that runs through exactly the same code path as a real model.
/// </summary>
/// <remarks>
/// <para>The folder holds <c>model_index.json</c>; <c>scheduler/scheduler_config.json</c> (PNDM, Stable Diffusion 1.5's
/// schedule); <c>tokenizer/</c> (CLIP format, <see cref="ClipVocabularyWriter"/>); <c>text_encoder/</c>
/// (<see cref="DemoTextEncoder"/>); <c>unet/</c> (<see cref="DemoUnet"/>); <c>vae_encoder/</c> and <c>vae_decoder/</c>
/// (<see cref="DemoVae"/>), each with its <c>config.json</c>; a README and the version stamp <see cref="StampFile"/>.
/// Images are 256×256 (latents 4×32×32), and the UNet takes no other size.</para>
/// <para>Building is deterministic: the same builder version gives the same bytes. The whole folder is about 0.5 MB.</para>
/// </remarks>
public static class DemoModelBuilder
{
    /// <summary>The builder version, written to <see cref="StampFile"/>; bump it whenever the model's bytes change.</summary>
    public const string Version = "demo-4";

    /// <summary>The version stamp file in the model folder, written last.</summary>
    public const string StampFile = "mlnet_demo_version.txt";

    private const string Description = "the demo model";

    /// <summary>The folder, inside the demo model's, of its outline ControlNet (<see cref="DemoControlNet"/>).</summary>
    public const string OutlineControlNetFolder = "controlnet-outline";

    /// <summary>The text of the version stamp.</summary>
    public static string StampText => $"MLNet.Diffusion demo model, builder {Version}\n";

    /// <summary>Whether <paramref name="directory"/> holds a demo model built by this builder version.</summary>
    public static bool IsCurrent(string directory) => DemoFolder.IsCurrent(directory, StampText);

    /// <summary>
    /// Builds the demo model into <paramref name="directory"/> unless it already holds one built by this
    /// builder version. Safe to call from several threads or processes at once (they wait for one another).
    /// </summary>
    /// <returns>True when it built the model; false when the folder was already current.</returns>
    public static bool EnsureBuilt(string directory) => DemoFolder.EnsureBuilt(directory, StampText, Description, WriteModel);

    /// <summary>
    /// Builds the demo model into <paramref name="outputDirectory"/>: written into a temporary sibling folder first and
    /// then renamed into place, so an interrupted build never leaves a half-written model. An existing folder is
    /// replaced only when it is empty or holds a demo model (of any version).
    /// </summary>
    /// <exception cref="IOException">The folder exists, is not empty and is not a demo model.</exception>
    public static void Build(string outputDirectory) => DemoFolder.Build(outputDirectory, Description, WriteModel);

    /// <summary>Total size in bytes of the files under <paramref name="directory"/>.</summary>
    public static long FolderSize(string directory) =>
        new DirectoryInfo(directory).EnumerateFiles("*", SearchOption.AllDirectories).Sum(f => f.Length);

    private static void WriteModel(string dir)
    {
        Directory.CreateDirectory(dir);
        var table = DemoLatentTable.Create();
        var captions = DemoUnet.CaptionEmbeddings();

        DemoTextEncoder.BuildGraph().Save(Path.Combine(dir, "text_encoder", "model.onnx"));
        DemoUnet.BuildGraph(table, captions).Save(Path.Combine(dir, "unet", "model.onnx"));
        // OnnxStack's layout: the ControlNet-ready UNet beside unet/, and a ControlNet in a folder of its own.
        DemoControlNet.BuildReadyUNet(table, captions).Save(Path.Combine(dir, "controlnet", "model.onnx"));
        DemoControlNet.BuildControlNet().Save(Path.Combine(dir, OutlineControlNetFolder, "model.onnx"));
        DemoVae.BuildEncoderGraph().Save(Path.Combine(dir, "vae_encoder", "model.onnx"));
        DemoVae.BuildDecoderGraph().Save(Path.Combine(dir, "vae_decoder", "model.onnx"));
        ClipVocabularyWriter.Write(Path.Combine(dir, "tokenizer"));

        const string note = "MLNet.Diffusion built-in demo model: hand-designed, not trained; see README.md in the model folder.";
        DemoJson.Write(Path.Combine(dir, "model_index.json"), w =>
        {
            w.WriteStartObject();
            w.WriteString("_class_name", "OnnxStableDiffusionPipeline");
            w.WriteString("_mlnet_demo", note);
            DemoFolder.WritePair(w, "feature_extractor", null, null);
            w.WriteBoolean("requires_safety_checker", false);
            DemoFolder.WritePair(w, "safety_checker", null, null);
            DemoFolder.WritePair(w, "scheduler", "diffusers", "PNDMScheduler");
            DemoFolder.WritePair(w, "text_encoder", "diffusers", "OnnxRuntimeModel");
            DemoFolder.WritePair(w, "tokenizer", "transformers", "CLIPTokenizer");
            DemoFolder.WritePair(w, "unet", "diffusers", "OnnxRuntimeModel");
            DemoFolder.WritePair(w, "vae_decoder", "diffusers", "OnnxRuntimeModel");
            DemoFolder.WritePair(w, "vae_encoder", "diffusers", "OnnxRuntimeModel");
            w.WriteEndObject();
        });

        Directory.CreateDirectory(Path.Combine(dir, "scheduler"));
        DemoJson.Write(Path.Combine(dir, "scheduler", "scheduler_config.json"), w =>
        {
            w.WriteStartObject();
            w.WriteString("_class_name", "PNDMScheduler");
            DemoFolder.WriteScheduleKeys(w);
            w.WriteEndObject();
        });

        int vocabSize = ClipVocabularyWriter.Tokens().Count;
        DemoJson.Write(Path.Combine(dir, "text_encoder", "config.json"), w =>
        {
            w.WriteStartObject();
            w.WriteString("_mlnet_demo", note);
            w.WriteStartArray("architectures");
            w.WriteStringValue("CLIPTextModel");
            w.WriteEndArray();
            w.WriteNumber("bos_token_id", vocabSize - 2);
            w.WriteNumber("eos_token_id", vocabSize - 1);
            w.WriteNumber("hidden_size", DemoVocabulary.Dimension);
            w.WriteNumber("max_position_embeddings", ClipVocabularyWriter.MaxLength);
            w.WriteString("model_type", "clip_text_model");
            w.WriteNumber("pad_token_id", vocabSize - 1);
            w.WriteNumber("projection_dim", DemoVocabulary.Dimension);
            w.WriteNumber("vocab_size", vocabSize);
            w.WriteEndObject();
        });

        DemoJson.Write(Path.Combine(dir, "unet", "config.json"), w =>
        {
            w.WriteStartObject();
            w.WriteString("_class_name", "UNet2DConditionModel");
            w.WriteString("_mlnet_demo", note + " Exact posterior-mean denoiser over the 600 demo images; takes 32×32 latents only.");
            w.WriteNumber("cross_attention_dim", DemoVocabulary.Dimension);
            w.WriteNumber("in_channels", DemoVae.LatentChannels);
            w.WriteNumber("out_channels", DemoVae.LatentChannels);
            w.WriteNumber("sample_size", DemoUnet.LatentSize);
            w.WriteEndObject();
        });

        DemoFolder.WriteVaeConfigs(dir, note);

        DemoFolder.WriteText(Path.Combine(dir, "README.md"), Readme());
        // Last: a folder with this stamp is complete.
        DemoFolder.WriteText(Path.Combine(dir, StampFile), StampText);
    }

    private static string Readme()
    {
        var words = string.Join(", ", DemoVocabulary.Words.Where(w => w.Slots.Length > 0).Select(w => w.Word));
        var s = new StringBuilder();
        s.Append("# MLNet.Diffusion demo model\n\n");
        s.Append("A tiny Stable Diffusion ONNX folder built by code (`dotnet run --project src/MLNet.Diffusion.ModelBuilder -- demo --out <dir>`),\n");
        s.Append("builder version ").Append(Version).Append(". It is not trained: every part is written down by hand.\n\n");
        s.Append("- Images are 256×256 (latents 4×32×32; the UNet takes no other size).\n");
        s.Append("- The dataset: ").Append(DemoDataset.Items.Count.ToString(CultureInfo.InvariantCulture))
            .Append(" images of a circle, square, triangle or star; red, yellow, green, blue or purple; small or large;\n");
        s.Append("  in a corner or the center; on a white, gray or black background. Caption example: \"")
            .Append(DemoDataset.Items[0].Caption).Append("\".\n");
        s.Append("- The UNet computes the exact posterior-mean denoiser of that dataset, with a prior over the images\n");
        s.Append("  from the prompt's words, so guidance works as in real models and the output is one of the dataset's images.\n");
        s.Append("- The VAE maps each 8×8 patch to a signed distance to the shape's outline, the background grey and the\n");
        s.Append("  shape colour; it decodes any latent to a picture with crisp edges.\n");
        s.Append("- The schedule is Stable Diffusion 1.5's scaled_linear with beta_end 0.03 instead of 0.012, so that the\n");
        s.Append("  samplers' start, pure noise, is the true distribution of noised latents at the first step.\n");
        s.Append("- `controlnet-outline/` is a ControlNet for outlines (white lines on black, such as Canny edges of a drawn\n");
        s.Append("  shape): it raises the prior of the dataset images whose outline the lines trace. `controlnet/` is the\n");
        s.Append("  ControlNet-ready UNet it steers (OnnxStack's layout).\n");
        s.Append("- Words that mean something: ").Append(words).Append(".\n");
        s.Append("  Others (\"a\", \"on\", \"background\", unknown words) are ignored.\n");
        return s.ToString();
    }
}
