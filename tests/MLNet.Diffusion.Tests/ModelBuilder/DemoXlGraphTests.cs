using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using MLNet.Diffusion.ModelBuilder.Demo;
using MLNet.Diffusion.Noise;

namespace MLNet.Diffusion.Tests.ModelBuilder;

/// <summary>The demo XL model's graphs run directly in ONNX Runtime against their C# references.</summary>
[Collection(DemoXlCollection.Name)]
public class DemoXlGraphTests(DemoXlModelFixture model)
{
    private const string Prompt = "a small red star in the top left corner on a black background";
    private static int D => DemoVocabulary.Dimension;

    [Fact]
    public void EncodersHaveTheClipContractsOfSdxl()
    {
        Assert.Equal(["input_ids"], model.TextEncoder.InputNames);
        Assert.Equal(TensorElementType.Int32, model.TextEncoder.InputMetadata["input_ids"].ElementDataType);
        Assert.Equal(["last_hidden_state", "pooler_output", "hidden_states.0", "hidden_states.1", "hidden_states.2", "hidden_states.3"],
            model.TextEncoder.OutputNames);
        Assert.Equal(["text_embeds", "last_hidden_state", "hidden_states.0", "hidden_states.1", "hidden_states.2", "hidden_states.3", "hidden_states.4"],
            model.TextEncoder2.OutputNames);
        Assert.Equal([-1, D], model.TextEncoder2.OutputMetadata["text_embeds"].Dimensions);
        Assert.Equal([-1, -1, D], model.TextEncoder.OutputMetadata["hidden_states.2"].Dimensions);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void EveryEncoderOutputEqualsTheReference(bool second)
    {
        var encoder = second ? DemoXlTextEncoder.Second : DemoXlTextEncoder.First;
        var ids = model.Ids(second, Prompt, "", "huge violet disc, bottom right; gray");
        var onnx = DemoXlModelFixture.RunEncoder(second ? model.TextEncoder2 : model.TextEncoder, ids);
        var (hidden, pooled) = encoder.Encode(ids, ClipVocabularyWriter.MaxLength);
        for (int k = 0; k <= encoder.Layers; k++) Assert.Equal(hidden[k], onnx[$"hidden_states.{k}"]);
        Assert.Equal(hidden[encoder.Layers], onnx["last_hidden_state"]);
        Assert.Equal(pooled, onnx[second ? "text_embeds" : "pooler_output"]);
    }

    [Fact]
    public void OnlyThePenultimateLayersCarryTheWordsAndTogetherWithThePooledTheyAreTheDemoEmbedding()
    {
        var first = DemoXlModelFixture.RunEncoder(model.TextEncoder, model.Ids(false, Prompt));
        var second = DemoXlModelFixture.RunEncoder(model.TextEncoder2, model.Ids(true, Prompt));
        var demo = DemoTextEncoder.Encode(model.Ids(false, Prompt));
        var demoPooled = DemoVocabulary.Pool(Prompt);
        // Summed over positions: penultimate(1) + penultimate(2) + text_embeds = the demo model's pooled prompt.
        var sum = new float[D];
        for (int l = 0; l < ClipVocabularyWriter.MaxLength; l++)
            for (int i = 0; i < D; i++) sum[i] += first["hidden_states.2"][l * D + i] + second["hidden_states.3"][l * D + i];
        for (int i = 0; i < D; i++) sum[i] += second["text_embeds"][i];
        Assert.Equal(demoPooled, sum);
        // Each part is non-empty and they do not overlap.
        var parts = new[] { first["hidden_states.2"], second["hidden_states.3"], second["text_embeds"] };
        foreach (var part in parts) Assert.Contains(part, v => v != 0);
        for (int i = 0; i < D; i++) Assert.True(parts.Count(p => Enumerable.Range(0, p.Length / D).Any(r => p[r * D + i] != 0)) <= 1, $"slot {i} in two parts");
        // The penultimate of the first encoder is the demo text encoder's hidden state on its slots.
        var mask = DemoXlTextEncoder.SlotMask(DemoXlTextEncoder.First.SlotGroups);
        for (int j = 0; j < demo.Length; j++) Assert.Equal(demo[j] * mask[j % D], first["hidden_states.2"][j]);
        // The last layer is the negation; the other layers differ from the penultimate.
        Assert.Equal(first["hidden_states.2"].Select(v => -v), first["last_hidden_state"]);
        foreach (var k in new[] { 0, 1 }) Assert.NotEqual(first["hidden_states.2"], first[$"hidden_states.{k}"]);
        foreach (var k in new[] { 0, 1, 2 }) Assert.NotEqual(second["hidden_states.3"], second[$"hidden_states.{k}"]);
    }

    [Fact]
    public void UnetHasSdxlsInputs()
    {
        var inputs = model.Unet.InputMetadata;
        Assert.Equal(["sample", "timestep", "encoder_hidden_states", "text_embeds", "time_ids"], model.Unet.InputNames);
        Assert.Equal([-1, 4, 32, 32], inputs["sample"].Dimensions);
        Assert.Equal([-1], inputs["timestep"].Dimensions);
        Assert.Equal([-1, -1, 2 * D], inputs["encoder_hidden_states"].Dimensions);
        Assert.Equal([-1, D], inputs["text_embeds"].Dimensions);
        Assert.Equal([-1, 6], inputs["time_ids"].Dimensions);
        Assert.All(inputs.Values, m => Assert.Equal(TensorElementType.Float, m.ElementDataType));
        Assert.Equal(["out_sample"], model.Unet.OutputNames);
    }

    [Theory]
    [InlineData(999f, 256f, 256f, 0f, 0f)]
    [InlineData(500f, 128f, 256f, 0f, 0f)]
    [InlineData(321.37f, 256f, 64f, 32f, 16f)]
    [InlineData(40f, 512f, 1024f, 0f, 0f)]
    public void UnetEqualsThePosteriorMeanReference(float t, float originalHeight, float originalWidth, float cropTop, float cropLeft)
    {
        // Batch 3: a noised dataset image under the prompt, noise under zeros, noise under arbitrary random conditioning.
        int n = DemoUnet.LatentLength;
        var sample = new float[3 * n];
        new GaussianNoise(42).Fill(sample);
        double a = DemoUnet.AlphaBar(t);
        for (int i = 0; i < n; i++)
            sample[i] = (float)(Math.Sqrt(a) * model.DatasetLatents[37 * n + i] + Math.Sqrt(1 - a) * sample[i]);
        var (context, pooled) = model.Condition(Prompt, "", "");
        var random = new float[ClipVocabularyWriter.MaxLength * 2 * D + D];
        new GaussianNoise(7).Fill(random);
        for (int i = 0; i < random.Length; i++) random[i] *= 0.05f;
        Array.Clear(context, ClipVocabularyWriter.MaxLength * 2 * D, ClipVocabularyWriter.MaxLength * 2 * D);   // zeros, as SDXL's empty negative
        random.AsSpan(0, ClipVocabularyWriter.MaxLength * 2 * D).CopyTo(context.AsSpan(2 * ClipVocabularyWriter.MaxLength * 2 * D));
        Array.Clear(pooled, D, D);
        random.AsSpan(ClipVocabularyWriter.MaxLength * 2 * D).CopyTo(pooled.AsSpan(2 * D));
        var timeIds = Enumerable.Repeat(new[] { originalHeight, originalWidth, cropTop, cropLeft, 256f, 256f }, 3).SelectMany(r => r).ToArray();
        var timesteps = new[] { t, t, t };

        var onnx = model.RunUnet(sample, timesteps, context, pooled, timeIds);
        var reference = DemoXlUnet.Predict(sample, timesteps, context, pooled, timeIds, model.DatasetLatents, model.CaptionEmbeddings);
        double scale = reference.Max(v => Math.Abs(v)), max = 0;
        for (int i = 0; i < onnx.Length; i++) max = Math.Max(max, Math.Abs(onnx[i] - reference[i]));
        Assert.True(max < 1e-3 * scale + 1e-4, $"max difference {max} (output scale {scale})");
    }

    [Fact]
    public void WithSdxlsConditioningTheUnetIsTheDemoModelsDenoiser()
    {
        // Prompt and zeros (SDXL's empty negative) at the default time ids equal the demo UNet's reference for the prompt
        // and the empty prompt: the same denoiser, reached through SDXL's inputs.
        int n = DemoUnet.LatentLength;
        var sample = new float[2 * n];
        new GaussianNoise(3).Fill(sample);
        double a = DemoUnet.AlphaBar(600);
        for (int i = 0; i < 2 * n; i++)
            sample[i] = (float)(Math.Sqrt(a) * model.DatasetLatents[(37 + 211 * (i / n)) * n + i % n] + Math.Sqrt(1 - a) * sample[i]);
        var (context, pooled) = model.Condition(Prompt, "");
        Array.Clear(context, context.Length / 2, context.Length / 2);
        Array.Clear(pooled, D, D);
        var onnx = model.RunUnet(sample, [600f, 600f], context, pooled, DemoXlModelFixture.DefaultTimeIds(2));
        var demoHidden = DemoTextEncoder.Encode(model.Ids(false, Prompt, ""));
        var demo = DemoUnet.Predict(sample, [600f, 600f], demoHidden, model.DatasetLatents, model.CaptionEmbeddings);
        double scale = demo.Max(v => Math.Abs(v)), max = 0;
        for (int i = 0; i < onnx.Length; i++) max = Math.Max(max, Math.Abs(onnx[i] - demo[i]));
        Assert.True(max < 1e-3 * scale + 1e-4, $"max difference {max} (output scale {scale})");
    }

    [Fact]
    public void TimeIdsScaleThePromptsHoldAndCropDoesNothing()
    {
        Assert.Equal(1, DemoXlUnet.SizeFactor([256, 256, 0, 0, 256, 256]));
        Assert.Equal(1, DemoXlUnet.SizeFactor([1024, 1024, 0, 0, 256, 256]));
        Assert.Equal(0.5, DemoXlUnet.SizeFactor([128, 256, 0, 0, 256, 256]));
        Assert.Equal(0.125, DemoXlUnet.SizeFactor([128, 64, 0, 0, 256, 256]));
        Assert.Equal(1, DemoXlUnet.SizeFactor([256, 128, 0, 0, 256, 128]));   // (height, width) order: width ratio 1
        Assert.Equal(0.5, DemoXlUnet.SizeFactor([256, 128, 0, 0, 128, 256])); // swapped target: width ratio 1/2

        int n = DemoUnet.LatentLength;
        var sample = new float[n];
        new GaussianNoise(11).Fill(sample);
        var (context, pooled) = model.Condition(Prompt);
        float[] Run(float[] ids) => model.RunUnet(sample, [700f], context, pooled, ids);
        var full = Run([256, 256, 0, 0, 256, 256]);
        Assert.Equal(full, Run([256, 256, 48, 96, 256, 256]));
        Assert.NotEqual(full, Run([128, 256, 0, 0, 256, 256]));
        // Original size 0: the prior is uniform, as for zero embeddings.
        var none = Run([0, 0, 0, 0, 256, 256]);
        var zeros = model.RunUnet(sample, [700f], new float[context.Length], new float[pooled.Length], DemoXlModelFixture.DefaultTimeIds(1));
        for (int i = 0; i < n; i++) Assert.Equal(zeros[i], none[i], 4);

        // The prior's pull on the captioned image (its log-prior margin over the runner-up) shrinks with r.
        var u = new double[3 * D];
        for (int l = 0; l < ClipVocabularyWriter.MaxLength; l++)
            for (int i = 0; i < 2 * D; i++) u[i] += context[l * 2 * D + i];
        for (int i = 0; i < D; i++) u[2 * D + i] = pooled[i];
        var w = DemoXlUnet.PriorMatrix(model.CaptionEmbeddings);
        int count = DemoDataset.Items.Count;
        var logits = Enumerable.Range(0, count).Select(k => Enumerable.Range(0, u.Length).Sum(i => u[i] * w[i * count + k])).ToArray();
        var target = DemoDataset.Items.Single(item => item.Caption == Prompt).Index;
        Assert.Equal(target, Array.IndexOf(logits, logits.Max()));
        Assert.Equal(DemoUnet.PriorSharpness, logits[target] - logits.Where((_, k) => k != target).Max(), 4);
    }

    [Fact]
    public void ReadingTheWrongLayerSwappingTheHalvesOrDroppingThePooledLosesThePrompt()
    {
        var first = DemoXlModelFixture.RunEncoder(model.TextEncoder, model.Ids(false, Prompt));
        var second = DemoXlModelFixture.RunEncoder(model.TextEncoder2, model.Ids(true, Prompt));
        int target = DemoDataset.Items.Single(item => item.Caption == Prompt).Index;
        var w = DemoXlUnet.PriorMatrix(model.CaptionEmbeddings);
        int count = DemoDataset.Items.Count;
        int Best(float[] h1, float[] h2, float[] pooled)
        {
            var u = new double[3 * D];
            for (int l = 0; l < ClipVocabularyWriter.MaxLength; l++)
                for (int i = 0; i < D; i++) (u[i], u[D + i]) = (u[i] + h1[l * D + i], u[D + i] + h2[l * D + i]);
            for (int i = 0; i < D; i++) u[2 * D + i] = pooled[i];
            var logits = Enumerable.Range(0, count).Select(k => Enumerable.Range(0, u.Length).Sum(i => u[i] * w[i * count + k])).ToArray();
            double max = logits.Max();
            // Ties (an attribute left unspecified) count as a miss: the prompt no longer picks one image.
            return logits.Count(v => v == max) == 1 ? Array.IndexOf(logits, max) : -1;
        }
        Assert.Equal(target, Best(first["hidden_states.2"], second["hidden_states.3"], second["text_embeds"]));
        Assert.NotEqual(target, Best(first["last_hidden_state"], second["last_hidden_state"], second["text_embeds"]));
        Assert.NotEqual(target, Best(first["hidden_states.1"], second["hidden_states.3"], second["text_embeds"]));
        Assert.NotEqual(target, Best(first["hidden_states.2"], second["hidden_states.2"], second["text_embeds"]));
        Assert.NotEqual(target, Best(second["hidden_states.3"], first["hidden_states.2"], second["text_embeds"]));
        Assert.NotEqual(target, Best(first["hidden_states.2"], second["hidden_states.3"], new float[D]));
    }
}
