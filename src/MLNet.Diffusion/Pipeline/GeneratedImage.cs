using Microsoft.ML.Data;
using MLNet.Diffusion.Pipeline;

namespace MLNet.Diffusion;

/// <summary>A generated image with what produced it. It owns its <see cref="Image"/>: dispose it (or the image) when done.</summary>
public sealed class GeneratedImage : IDisposable
{
    internal GeneratedImage(MLImage image, ImagePrompt prompt, float[] latents)
    {
        Image = image;
        Prompt = prompt;
        Latents = latents;
    }

    /// <summary>The RGBA image, released by <see cref="Dispose"/>.</summary>
    public MLImage Image { get; }

    /// <summary>The prompt, negative prompt and seed.</summary>
    public ImagePrompt Prompt { get; }

    /// <summary>The final latents [4, h, w] (scaled, as the UNet sees them).</summary>
    public float[] Latents { get; }

    /// <summary>Writes the image as PNG (or another format chosen by the extension).</summary>
    public void Save(string path) => Image.Save(path);

    /// <summary>Releases the image's native memory.</summary>
    public void Dispose() => Image.Dispose();
}
