using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using MLNet.Diffusion.Noise;
using MLNet.Diffusion.Schedulers;
using MLNet.Diffusion.Tokenization;

namespace MLNet.Diffusion.Benchmarks;

/// <summary>
/// Text to image written the way the .NET Stable Diffusion samples do it today (ONNX Runtime's C# tutorial and the
/// samples derived from it): new <see cref="DenseTensor{T}"/> and <see cref="NamedOnnxValue"/> inputs at every step,
/// <c>session.Run(IReadOnlyCollection&lt;NamedOnnxValue&gt;)</c> returning freshly allocated outputs, the CFG batch
/// built and split element by element through the tensor indexers, guidance and an Euler step in scalar code and
/// LINQ. Same model files, default session options, the same seeded noise and schedule tables (from
/// <see cref="EulerDiscreteScheduler"/>) as the library, so both paths do the same arithmetic and should give
/// the same image.
/// </summary>
public sealed class NaiveStableDiffusion : IDisposable
{
    private readonly InferenceSession _textEncoder, _unet, _vaeDecoder;
    private readonly ClipTokenizer _tokenizer;
    private readonly SchedulerConfig _config;
    private readonly float _scalingFactor;

    /// <summary>Loads the four parts of a model folder with default session options.</summary>
    public NaiveStableDiffusion(string folder)
    {
        _tokenizer = ClipTokenizer.Load(Path.Combine(folder, "tokenizer"));
        _textEncoder = new InferenceSession(Path.Combine(folder, "text_encoder", "model.onnx"));
        _unet = new InferenceSession(Path.Combine(folder, "unet", "model.onnx"));
        _vaeDecoder = new InferenceSession(Path.Combine(folder, "vae_decoder", "model.onnx"));
        _config = SchedulerConfig.Load(Path.Combine(folder, "scheduler", "scheduler_config.json"));
        // The samples hard-code SD's 0.18215; read the folder's value so both paths decode the same latents.
        using var vae = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(folder, "vae_decoder", "config.json")));
        _scalingFactor = vae.RootElement.TryGetProperty("scaling_factor", out var factor) ? factor.GetSingle() : 0.18215f;
    }

    /// <summary>Generates one image; returns RGBA bytes (height × width × 4).</summary>
    public byte[] Generate(string prompt, long seed, int steps, float guidance, int height, int width)
    {
        // Text embeddings: unconditional and conditional, concatenated element by element.
        var cond = Encode(prompt);
        var uncond = Encode("");
        var textEmbeddings = new DenseTensor<float>([2, cond.Dimensions[1], cond.Dimensions[2]]);
        for (int i = 0; i < cond.Dimensions[1]; i++)
            for (int j = 0; j < cond.Dimensions[2]; j++)
            {
                textEmbeddings[0, i, j] = uncond[0, i, j];
                textEmbeddings[1, i, j] = cond[0, i, j];
            }

        var scheduler = new EulerDiscreteScheduler(_config);
        scheduler.SetTimesteps(steps);
        var timesteps = scheduler.Timesteps.ToArray();
        var sigmas = scheduler.Sigmas.ToArray();

        int h = height / 8, w = width / 8;
        var noise = new float[4 * h * w];
        new GaussianNoise(seed).Fill(noise);
        var latents = new DenseTensor<float>(noise.Select(x => x * scheduler.InitNoiseSigma).ToArray(), [1, 4, h, w]);

        for (int t = 0; t < timesteps.Length; t++)
        {
            // torch.cat([latents] * 2), then scale_model_input.
            var latentModelInput = Duplicate(latents.ToArray(), [2, 4, h, w]);
            float divisor = (float)Math.Sqrt(sigmas[t] * sigmas[t] + 1);
            latentModelInput = new DenseTensor<float>(latentModelInput.Select(x => x / divisor).ToArray(), latentModelInput.Dimensions);

            var input = new List<NamedOnnxValue>
            {
                NamedOnnxValue.CreateFromTensor("encoder_hidden_states", textEmbeddings),
                NamedOnnxValue.CreateFromTensor("sample", latentModelInput),
                NamedOnnxValue.CreateFromTensor("timestep", new DenseTensor<float>(new[] { timesteps[t], timesteps[t] }, [2])),
            };
            using var output = _unet.Run(input);
            var outputTensor = output.First().AsTensor<float>();

            // noise_pred_uncond, noise_pred_text = noise_pred.chunk(2); guidance.
            var (uncondPred, textPred) = Split(outputTensor, [1, 4, h, w]);
            var noisePred = new DenseTensor<float>([1, 4, h, w]);
            for (int c = 0; c < 4; c++)
                for (int y = 0; y < h; y++)
                    for (int x = 0; x < w; x++)
                        noisePred[0, c, y, x] = uncondPred[0, c, y, x] + guidance * (textPred[0, c, y, x] - uncondPred[0, c, y, x]);

            // Euler: x ← x + (σ_next − σ)·ε (ε-prediction, so d = ε).
            float dt = (float)(sigmas[t + 1] - sigmas[t]);
            latents = new DenseTensor<float>(latents.Zip(noisePred, (x, e) => x + dt * e).ToArray(), [1, 4, h, w]);
        }

        // VAE: latents / scaling factor, decode, [-1, 1] → bytes.
        var scaled = new DenseTensor<float>(latents.Select(x => x / _scalingFactor).ToArray(), [1, 4, h, w]);
        using var decoded = _vaeDecoder.Run([NamedOnnxValue.CreateFromTensor("latent_sample", scaled)]);
        var image = decoded.First().AsTensor<float>();
        var rgba = new byte[height * width * 4];
        for (int y = 0; y < height; y++)
            for (int x = 0; x < width; x++)
            {
                for (int c = 0; c < 3; c++)
                    rgba[(y * width + x) * 4 + c] = (byte)Math.Round(Math.Clamp(image[0, c, y, x] / 2 + 0.5, 0, 1) * 255);
                rgba[(y * width + x) * 4 + 3] = 255;
            }
        return rgba;
    }

    private DenseTensor<float> Encode(string text)
    {
        var ids = _tokenizer.Encode(text).ToArray();
        var input = new DenseTensor<int>(ids, [1, ids.Length]);
        using var output = _textEncoder.Run([NamedOnnxValue.CreateFromTensor("input_ids", input)]);
        var hidden = output.First(o => o.Name == "last_hidden_state").AsTensor<float>();
        return new DenseTensor<float>(hidden.ToArray(), hidden.Dimensions.ToArray());
    }

    private static DenseTensor<float> Duplicate(float[] data, int[] dimensions)
    {
        var doubled = new float[data.Length * 2];
        for (int i = 0; i < data.Length; i++)
        {
            doubled[i] = data[i];
            doubled[i + data.Length] = data[i];
        }
        return new DenseTensor<float>(doubled, dimensions);
    }

    private static (DenseTensor<float>, DenseTensor<float>) Split(Tensor<float> tensor, int[] dimensions)
    {
        var a = new DenseTensor<float>(dimensions);
        var b = new DenseTensor<float>(dimensions);
        for (int c = 0; c < dimensions[1]; c++)
            for (int y = 0; y < dimensions[2]; y++)
                for (int x = 0; x < dimensions[3]; x++)
                {
                    a[0, c, y, x] = tensor[0, c, y, x];
                    b[0, c, y, x] = tensor[1, c, y, x];
                }
        return (a, b);
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _textEncoder.Dispose();
        _unet.Dispose();
        _vaeDecoder.Dispose();
    }
}
