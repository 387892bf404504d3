using Microsoft.ML.Data;
using MLNet.Diffusion.Pipeline;
using MLNet.Diffusion.Server.Errors;

namespace MLNet.Diffusion.Server.Api;

/// <summary>
/// The checks both APIs share, each through <see cref="SettingLimits"/> (the one home of the engine's limits and their
/// words) with the field named as the client spelled it, plus the decoding of uploaded images.
/// </summary>
internal static class RequestChecks
{
    /// <summary>Throws a 400 naming <paramref name="param"/> when <paramref name="problem"/> is not null.</summary>
    public static void ThrowIf(string? problem, string param)
    {
        if (problem is not null) throw RequestException.BadValue(param, problem);
    }

    /// <summary>A width or height: a multiple of 8 from 8 to 4096.</summary>
    public static int? Size(string param, long? value)
    {
        if (value is not long v) return null;
        ThrowIf(SettingLimits.Size($"'{param}'", (int)Math.Clamp(v, int.MinValue, int.MaxValue)), param);
        return (int)v;
    }

    /// <summary>Inference steps, 1 to 1000 (the server's own lower cap is checked when the request runs).</summary>
    public static int? Steps(string param, long? value)
    {
        if (value is not long v) return null;
        ThrowIf(SettingLimits.Steps($"'{param}'", (int)Math.Clamp(v, int.MinValue, int.MaxValue)), param);
        return (int)v;
    }

    /// <summary>A guidance scale (finite).</summary>
    public static float? Guidance(string param, double? value)
    {
        if (value is not double v) return null;
        ThrowIf(SettingLimits.GuidanceScale($"'{param}'", (float)v), param);
        return (float)v;
    }

    /// <summary>An image-to-image strength, 0 to 1.</summary>
    public static float? Strength(string param, double? value)
    {
        if (value is not double v) return null;
        ThrowIf(SettingLimits.Strength($"'{param}'", (float)v), param);
        return (float)v;
    }

    /// <summary>A scheduler name the engine knows (null or empty: the model's own).</summary>
    public static string? Scheduler(string param, string? value)
    {
        if (string.IsNullOrWhiteSpace(value)) return null;
        ThrowIf(SettingLimits.Scheduler($"'{param}'", value), param);
        return value;
    }

    /// <summary>An image count from 1 to <paramref name="max"/>.</summary>
    public static int Count(string param, long? value, int max)
    {
        if (value is not long v) return 1;
        ThrowIf(SettingLimits.Count($"'{param}'", (int)Math.Clamp(v, int.MinValue, int.MaxValue), 1, max), param);
        return (int)v;
    }

    /// <summary>Decodes an uploaded image (PNG, JPEG, WebP…); anything else is a 400 naming <paramref name="param"/>.</summary>
    public static MLImage DecodeImage(byte[] encoded, string param)
    {
        try
        {
            return ImageLoader.Load(encoded, $"'{param}'", ImageLoader.DefaultMaxPixels);
        }
        catch (InvalidDataException e)
        {
            throw RequestException.BadValue(param, $"'{param}' is not an image the server can read (PNG, JPEG, WebP, BMP, GIF): {e.Message}");
        }
    }

    /// <summary>Decodes a base64 image, with or without a <c>data:image/…;base64,</c> prefix (A1111 takes both).</summary>
    public static MLImage DecodeBase64Image(string base64, string param)
    {
        int comma = base64.StartsWith("data:", StringComparison.OrdinalIgnoreCase) ? base64.IndexOf(',') : -1;
        byte[] bytes;
        try
        {
            bytes = Convert.FromBase64String(comma >= 0 ? base64[(comma + 1)..] : base64);
        }
        catch (FormatException)
        {
            throw RequestException.BadValue(param, $"'{param}' must be a base64-encoded image (optionally with a data:image/png;base64, prefix); it is not valid base64.");
        }
        return DecodeImage(bytes, param);
    }

    /// <summary>
    /// OpenAI's mask convention turned into the engine's: OpenAI repaints where the mask is fully transparent (alpha 0),
    /// the engine where it is white. Returns a new opaque black-and-white image of the same size.
    /// </summary>
    public static MLImage MaskFromAlpha(MLImage source)
    {
        var pixels = source.Pixels;
        int count = source.Width * source.Height;
        var rgba = new byte[count * 4];
        int stride = pixels.Length / source.Height;
        for (int y = 0, o = 0; y < source.Height; y++)
        {
            var row = pixels.Slice(y * stride, source.Width * 4);
            for (int x = 3; x < row.Length; x += 4, o += 4)
            {
                byte value = row[x] == 0 ? (byte)255 : (byte)0;
                rgba[o] = rgba[o + 1] = rgba[o + 2] = value;
                rgba[o + 3] = 255;
            }
        }
        return MLImage.CreateFromPixels(source.Width, source.Height, MLPixelFormat.Rgba32, rgba);
    }

    /// <summary>Whether any pixel of <paramref name="image"/> is fully transparent.</summary>
    public static bool HasTransparency(MLImage image)
    {
        var pixels = image.Pixels;
        for (int i = 3; i < pixels.Length; i += 4)
            if (pixels[i] == 0) return true;
        return false;
    }
}
