using Microsoft.ML.Data;

namespace MLNet.Diffusion.Server.Queue;

/// <summary>
/// What one HTTP request asks the engine for, in the engine's terms, once its API's fields are read and checked:
/// <see cref="Iterations"/> engine calls of <see cref="BatchSize"/> images, image i with seed <see cref="Seed"/> + i.
/// </summary>
internal sealed class GenerationRequest : IDisposable
{
    /// <summary>The model name as the request gave it (null: the default) and the field it came from.</summary>
    public string? Model { get; init; }

    /// <summary>The request field that names the model (<c>model</c>, <c>override_settings.sd_model_checkpoint</c>).</summary>
    public string ModelParam { get; init; } = "model";

    /// <summary>The prompt.</summary>
    public required string Prompt { get; init; }

    /// <summary>The negative prompt ("" for none).</summary>
    public string NegativePrompt { get; init; } = "";

    /// <summary>The first image's seed; null: a random one.</summary>
    public long? Seed { get; init; }

    /// <summary>Images per engine call.</summary>
    public int BatchSize { get; init; } = 1;

    /// <summary>Engine calls.</summary>
    public int Iterations { get; init; } = 1;

    /// <summary>The settings (size, steps, guidance, scheduler); null sizes take the model's default.</summary>
    public GenerationOptions Options { get; init; } = new();

    /// <summary>The init image (image-to-image); owned by the request.</summary>
    public MLImage? InitImage { get; init; }

    /// <summary>What to repaint in the init image (white), or null; owned by the request.</summary>
    public MLImage? Mask { get; init; }

    /// <summary>Image-to-image strength, or null for the engine's default.</summary>
    public float? Strength { get; init; }

    /// <summary>A1111's <c>force_task_id</c>: the id the job is reported under.</summary>
    public string? TaskId { get; init; }

    /// <summary>Disposes the images.</summary>
    public void Dispose()
    {
        InitImage?.Dispose();
        Mask?.Dispose();
    }
}

/// <summary>The images of a request: PNG bytes and seed each, and whether an interrupt cut it short.</summary>
internal sealed record GenerationResult(string Model, IReadOnlyList<(byte[] Png, long Seed)> Images, long FirstSeed, int Width, int Height, bool Interrupted);
