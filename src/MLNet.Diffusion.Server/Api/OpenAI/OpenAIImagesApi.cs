using System.Globalization;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Routing;
using MLNet.Diffusion.Server.Errors;
using MLNet.Diffusion.Server.Queue;

namespace MLNet.Diffusion.Server.Api.OpenAI;

/// <summary>
/// OpenAI's images API (its API reference, "Images"): <c>POST /v1/images/generations</c>, <c>POST /v1/images/edits</c>
/// and <c>GET /v1/models</c>, so that the official OpenAI SDKs and <c>Microsoft.Extensions.AI</c>'s OpenAI image
/// generator can use the engine.
/// </summary>
/// <remarks>
/// <para>Fields: <c>model</c> (a served name; absent: the first), <c>prompt</c> (required), <c>n</c>, <c>size</c>
/// (<c>WxH</c>, multiples of 8, or <c>auto</c> for the model's own size), <c>response_format</c> (<c>b64_json</c> only:
/// the server stores no image to give a URL for), <c>output_format</c> (<c>png</c> only). <c>quality</c>, <c>style</c>,
/// <c>background</c>, <c>moderation</c>, <c>output_compression</c> and <c>user</c> are accepted and ignored: the engine
/// has no such settings (use <c>steps</c> for quality).</para>
/// <para>Extra fields: <c>seed</c> (image i gets seed + i), <c>steps</c>, <c>guidance_scale</c>, <c>negative_prompt</c>,
/// <c>scheduler</c> (the engine's names, e.g. <c>euler-a</c>), and for edits <c>strength</c>.</para>
/// <para>Edits take <c>multipart/form-data</c>: <c>image</c> (or <c>image[]</c>, the first), an optional <c>mask</c> whose
/// fully transparent pixels mark what to repaint (as OpenAI's); without a mask, an image with transparent pixels is
/// repainted there, and an opaque one is redrawn as a whole (image-to-image with <c>strength</c>, default 0.8).</para>
/// </remarks>
internal static class OpenAIImagesApi
{
    /// <summary>Maps the endpoints.</summary>
    public static void Map(IEndpointRouteBuilder routes)
    {
        routes.MapPost("/v1/images/generations", GenerationsAsync);
        routes.MapPost("/v1/images/edits", EditsAsync);
        routes.MapGet("/v1/models", ListModels);
        routes.MapGet("/v1/models/{name}", GetModel);
    }

    private static async Task GenerationsAsync(HttpContext context, ImageGenerationService service, DiffusionServerOptions options)
    {
        var (document, body) = await JsonFields.ReadAsync(context.Request, context.RequestAborted).ConfigureAwait(false);
        using (document)
        {
            var fields = new JsonFieldSource(body);
            using var request = Build(fields, options, init: null, mask: null);
            await RespondAsync(context, service, request).ConfigureAwait(false);
        }
    }

    private static async Task EditsAsync(HttpContext context, ImageGenerationService service, DiffusionServerOptions options)
    {
        if (!context.Request.HasFormContentType)
            throw new RequestException(StatusCodes.Status415UnsupportedMediaType,
                $"/v1/images/edits takes multipart/form-data (fields image, mask, prompt…); got Content-Type '{context.Request.ContentType}'.", null, "unsupported_media_type");
        var form = await context.Request.ReadFormAsync(context.RequestAborted).ConfigureAwait(false);
        var file = form.Files.GetFile("image") ?? form.Files.GetFile("image[]")
            ?? throw RequestException.Missing("image", "'image' is required: the image to edit, as a file field of the multipart form (PNG, JPEG or WebP).");
        var init = RequestChecks.DecodeImage(await ReadAllAsync(file, context.RequestAborted).ConfigureAwait(false), "image");
        Microsoft.ML.Data.MLImage? mask = null;
        try
        {
            if (form.Files.GetFile("mask") is { } maskFile)
            {
                using var alpha = RequestChecks.DecodeImage(await ReadAllAsync(maskFile, context.RequestAborted).ConfigureAwait(false), "mask");
                mask = RequestChecks.MaskFromAlpha(alpha);
            }
            else if (RequestChecks.HasTransparency(init))
            {
                mask = RequestChecks.MaskFromAlpha(init);
            }
        }
        catch
        {
            init.Dispose();
            throw;
        }
        using var request = Build(new FormFieldSource(form), options, init, mask);
        await RespondAsync(context, service, request).ConfigureAwait(false);
    }

    private static async Task<byte[]> ReadAllAsync(IFormFile file, CancellationToken cancellationToken)
    {
        using var stream = file.OpenReadStream();
        using var copy = new MemoryStream((int)Math.Min(file.Length, int.MaxValue));
        await stream.CopyToAsync(copy, cancellationToken).ConfigureAwait(false);
        return copy.ToArray();
    }

    /// <summary>Reads and checks the fields; the request owns <paramref name="init"/> and <paramref name="mask"/> (disposed if this throws).</summary>
    private static GenerationRequest Build(IFieldSource fields, DiffusionServerOptions options, Microsoft.ML.Data.MLImage? init, Microsoft.ML.Data.MLImage? mask)
    {
        try
        {
            string prompt = fields.String("prompt") ?? throw RequestException.Missing("prompt", "'prompt' is required: the text to draw.");
            string? format = fields.String("response_format");
            if (format is not null && format != "b64_json")
                throw RequestException.BadValue("response_format", format == "url"
                    ? "'response_format' \"url\" is not supported: this server stores no images to link to; ask for \"b64_json\" (the image in the response)."
                    : $"'response_format' must be \"b64_json\"; got \"{format}\".");
            string? outputFormat = fields.String("output_format");
            if (outputFormat is not null && !outputFormat.Equals("png", StringComparison.OrdinalIgnoreCase))
                throw RequestException.BadValue("output_format", $"'output_format' must be \"png\" (the only format this server writes); got \"{outputFormat}\".");
            // Accepted for compatibility, no effect: the engine has no such settings.
            _ = fields.String("quality");
            _ = fields.String("style");
            _ = fields.String("user");

            var (width, height) = ParseSize(fields.String("size"));
            var generation = new GenerationOptions
            {
                Width = width,
                Height = height,
                Scheduler = RequestChecks.Scheduler("scheduler", fields.String("scheduler")),
            };
            if (RequestChecks.Steps("steps", fields.Integer("steps")) is int steps) generation.Steps = steps;
            if (RequestChecks.Guidance("guidance_scale", fields.Number("guidance_scale")) is float guidance) generation.GuidanceScale = guidance;
            return new GenerationRequest
            {
                Model = fields.String("model"),
                Prompt = prompt,
                NegativePrompt = fields.String("negative_prompt") ?? "",
                Seed = fields.Integer("seed"),
                BatchSize = RequestChecks.Count("n", fields.Integer("n"), options.MaxImagesPerRequest),
                Options = generation,
                InitImage = init,
                Mask = mask,
                Strength = RequestChecks.Strength("strength", fields.Number("strength")),
            };
        }
        catch
        {
            init?.Dispose();
            mask?.Dispose();
            throw;
        }
    }

    /// <summary>Parses <c>size</c>: <c>WxH</c> (each a multiple of 8), or <c>auto</c>/absent for the model's default.</summary>
    internal static (int? Width, int? Height) ParseSize(string? size)
    {
        if (string.IsNullOrWhiteSpace(size) || size == "auto") return (null, null);
        int x = size.IndexOf('x', StringComparison.OrdinalIgnoreCase);
        if (x < 0 || !int.TryParse(size.AsSpan(0, x), NumberStyles.None, CultureInfo.InvariantCulture, out int w)
            || !int.TryParse(size.AsSpan(x + 1), NumberStyles.None, CultureInfo.InvariantCulture, out int h))
            throw RequestException.BadValue("size", $"'size' must be \"WIDTHxHEIGHT\" (for example \"512x512\") or \"auto\"; got \"{size}\".");
        foreach (var (side, value) in new[] { ("width", w), ("height", h) })
        {
            if (MLNet.Diffusion.Pipeline.SettingLimits.Size($"'size' {side}", value) is { } problem)
                throw RequestException.BadValue("size", $"{problem} (size \"{size}\"; the nearest valid is \"{Nearest(w)}x{Nearest(h)}\").");
        }
        return (w, h);
    }

    private static int Nearest(int side) =>
        Math.Clamp((side + 4) / 8 * 8, MLNet.Diffusion.Pipeline.SettingLimits.MinSize, MLNet.Diffusion.Pipeline.SettingLimits.MaxSize);

    private static async Task RespondAsync(HttpContext context, ImageGenerationService service, GenerationRequest request)
    {
        var result = await service.GenerateAsync(request, "n", context.RequestAborted).ConfigureAwait(false);
        context.Response.ContentType = "application/json";
        await using var json = new Utf8JsonWriter(context.Response.Body);
        json.WriteStartObject();
        json.WriteNumber("created", DateTimeOffset.UtcNow.ToUnixTimeSeconds());
        json.WriteStartArray("data");
        foreach (var (png, seed) in result.Images)
        {
            json.WriteStartObject();
            json.WriteBase64String("b64_json", png);
            json.WriteString("revised_prompt", request.Prompt);
            json.WriteNumber("seed", seed);
            json.WriteEndObject();
        }
        json.WriteEndArray();
        json.WriteString("output_format", "png");
        json.WriteString("size", string.Create(CultureInfo.InvariantCulture, $"{result.Width}x{result.Height}"));
        json.WriteEndObject();
        await json.FlushAsync(context.RequestAborted).ConfigureAwait(false);
    }

    private static IResult ListModels(ImageGenerationService service) =>
        Results.Json(new { @object = "list", data = service.Models.Names.Select(Describe).ToArray() });

    private static IResult GetModel(string name, ImageGenerationService service)
    {
        if (!service.Models.Names.Contains(name))
            throw new RequestException(StatusCodes.Status404NotFound,
                $"The model '{name}' does not exist on this server; it serves: {string.Join(", ", service.Models.Names)}.", "model", "model_not_found");
        return Results.Json(Describe(name));
    }

    private static object Describe(string name) => new { id = name, @object = "model", created = 0, owned_by = "mlnet-diffusion" };
}
