using System.Globalization;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Routing;
using Microsoft.ML.Data;
using MLNet.Diffusion.Server.Errors;
using MLNet.Diffusion.Server.Queue;

namespace MLNet.Diffusion.Server.Api.Automatic1111;

/// <summary>
/// AUTOMATIC1111's web API (<c>modules/api/api.py</c> and <c>models.py</c>): <c>POST /sdapi/v1/txt2img</c> and
/// <c>/img2img</c>, <c>GET /sdapi/v1/samplers</c>, <c>/sd-models</c>, <c>/progress</c>, <c>POST /sdapi/v1/interrupt</c>.
/// </summary>
/// <remarks>
/// <para>Fields read: <c>prompt</c>, <c>negative_prompt</c>, <c>seed</c> (−1: random; image i gets seed + i),
/// <c>steps</c>, <c>cfg_scale</c>, <c>width</c>, <c>height</c>, <c>sampler_name</c> (or the older <c>sampler_index</c>),
/// <c>scheduler</c> ("Karras"), <c>batch_size</c>, <c>n_iter</c>, <c>override_settings.sd_model_checkpoint</c> (a served
/// model name), <c>force_task_id</c> (the id <c>/progress?id_task=</c> reports), <c>send_images</c>; img2img adds
/// <c>init_images</c> (base64; the first is used), <c>mask</c> (base64, white is repainted), <c>inpainting_mask_invert</c>
/// and <c>denoising_strength</c> (default 0.75). Other fields of A1111's models (hires fix, restore faces, scripts…) are
/// accepted and ignored. Omitted fields take the engine's defaults (steps 25, cfg_scale 7.5, the model's own size).</para>
/// <para>Responses: <c>{"images": [base64 PNG…], "parameters": {the request}, "info": "JSON text"}</c>. An interrupted
/// request answers with the images of the batches that finished.</para>
/// </remarks>
internal static class A1111Api
{
    /// <summary>A1111's img2img default <c>denoising_strength</c>.</summary>
    public const float DefaultDenoisingStrength = 0.75f;

    /// <summary>Maps the endpoints.</summary>
    public static void Map(IEndpointRouteBuilder routes)
    {
        routes.MapPost("/sdapi/v1/txt2img", (HttpContext c, ImageGenerationService s, DiffusionServerOptions o) => GenerateAsync(c, s, o, image: false));
        routes.MapPost("/sdapi/v1/img2img", (HttpContext c, ImageGenerationService s, DiffusionServerOptions o) => GenerateAsync(c, s, o, image: true));
        routes.MapGet("/sdapi/v1/samplers", () => Results.Json(A1111Samplers.All.Select(s => new { name = s.Name, aliases = s.Aliases, options = new Dictionary<string, string>() })));
        routes.MapGet("/sdapi/v1/sd-models", (ImageGenerationService s) => Results.Json(s.Models.Names.Select(n => new
        {
            title = n,
            model_name = n,
            hash = (string?)null,
            sha256 = (string?)null,
            filename = n,   // A1111 gives the file path; the server does not reveal its folders.
            config = (string?)null,
        })));
        routes.MapGet("/sdapi/v1/progress", Progress);
        routes.MapPost("/sdapi/v1/interrupt", (ImageGenerationService s) =>
        {
            s.Queue.InterruptRunning();
            return Results.Json(new { });
        });
    }

    private static async Task GenerateAsync(HttpContext context, ImageGenerationService service, DiffusionServerOptions options, bool image)
    {
        var (document, fields) = await JsonFields.ReadAsync(context.Request, context.RequestAborted).ConfigureAwait(false);
        using (document)
        {
            using var request = Build(fields, options, image);
            var result = await service.GenerateAsync(request, "batch_size", context.RequestAborted).ConfigureAwait(false);
            bool send = fields.Boolean("send_images") ?? true;
            context.Response.ContentType = "application/json";
            await using var json = new Utf8JsonWriter(context.Response.Body);
            json.WriteStartObject();
            json.WriteStartArray("images");
            if (send)
                foreach (var (png, _) in result.Images) json.WriteBase64StringValue(png);
            json.WriteEndArray();
            json.WritePropertyName("parameters");
            document.RootElement.WriteTo(json);
            json.WriteString("info", Info(request, result));
            json.WriteEndObject();
            await json.FlushAsync(context.RequestAborted).ConfigureAwait(false);
        }
    }

    private static GenerationRequest Build(JsonFields fields, DiffusionServerOptions options, bool image)
    {
        string prompt = fields.String("prompt") ?? "";
        long seed = fields.Integer("seed", -1, long.MaxValue) ?? -1;
        var generation = new GenerationOptions
        {
            Width = RequestChecks.Size("width", fields.Integer("width")),
            Height = RequestChecks.Size("height", fields.Integer("height")),
            Scheduler = A1111Samplers.Resolve(fields.String("sampler_name") ?? fields.String("sampler_index"), fields.String("scheduler"),
                fields.String("sampler_name") is null && fields.String("sampler_index") is not null ? "sampler_index" : "sampler_name"),
        };
        if (RequestChecks.Steps("steps", fields.Integer("steps")) is int steps) generation.Steps = steps;
        if (RequestChecks.Guidance("cfg_scale", fields.Number("cfg_scale")) is float cfg) generation.GuidanceScale = cfg;
        int batchSize = RequestChecks.Count("batch_size", fields.Integer("batch_size"), options.MaxImagesPerRequest);
        int iterations = RequestChecks.Count("n_iter", fields.Integer("n_iter"), options.MaxImagesPerRequest);
        var overrides = fields.Object("override_settings");
        string? model = overrides?.String("sd_model_checkpoint");
        if (model is not null) model = StripHash(model);

        MLImage? init = null, mask = null;
        float? strength = null;
        if (image)
        {
            var inits = fields.Strings("init_images");
            if (inits is null || inits.Length == 0)
                throw RequestException.Missing("init_images", "'init_images' is required for img2img: a list with one base64-encoded image.");
            strength = RequestChecks.Strength("denoising_strength", fields.Number("denoising_strength")) ?? DefaultDenoisingStrength;
            init = RequestChecks.DecodeBase64Image(inits[0], "init_images[0]");
            try
            {
                if (fields.String("mask") is { Length: > 0 } maskText)
                {
                    mask = RequestChecks.DecodeBase64Image(maskText, "mask");
                    if (fields.Integer("inpainting_mask_invert", 0, 1) == 1)
                    {
                        var inverted = Inverted(mask);
                        mask.Dispose();
                        mask = inverted;
                    }
                }
            }
            catch
            {
                init.Dispose();
                throw;
            }
        }
        return new GenerationRequest
        {
            Model = model,
            ModelParam = "override_settings.sd_model_checkpoint",
            Prompt = prompt,
            NegativePrompt = fields.String("negative_prompt") ?? "",
            Seed = seed < 0 ? null : seed,
            BatchSize = batchSize,
            Iterations = iterations,
            Options = generation,
            InitImage = init,
            Mask = mask,
            Strength = strength,
            TaskId = fields.String("force_task_id"),
        };
    }

    /// <summary>A1111 titles are "name [hash]"; the name is what the server knows.</summary>
    private static string StripHash(string title)
    {
        int bracket = title.LastIndexOf(" [", StringComparison.Ordinal);
        return bracket > 0 && title.EndsWith(']') ? title[..bracket] : title;
    }

    /// <summary>The mask with black and white swapped (A1111's <c>inpainting_mask_invert</c> 1: black is repainted).</summary>
    private static MLImage Inverted(MLImage mask)
    {
        var pixels = mask.Pixels;
        int stride = pixels.Length / mask.Height;
        var inverted = new byte[mask.Width * mask.Height * 4];
        for (int y = 0, o = 0; y < mask.Height; y++)
        {
            var row = pixels.Slice(y * stride, mask.Width * 4);
            for (int i = 0; i < row.Length; i++, o++) inverted[o] = (i & 3) == 3 ? (byte)255 : (byte)(255 - row[i]);
        }
        return MLImage.CreateFromPixels(mask.Width, mask.Height, mask.PixelFormat, inverted);
    }

    private static string Info(GenerationRequest request, GenerationResult result)
    {
        var output = new MemoryStream();
        using (var json = new Utf8JsonWriter(output))
        {
            json.WriteStartObject();
            json.WriteString("prompt", request.Prompt);
            json.WriteStartArray("all_prompts");
            foreach (var _ in result.Images) json.WriteStringValue(request.Prompt);
            json.WriteEndArray();
            json.WriteString("negative_prompt", request.NegativePrompt);
            json.WriteNumber("seed", result.FirstSeed);
            json.WriteStartArray("all_seeds");
            foreach (var (_, seed) in result.Images) json.WriteNumberValue(seed);
            json.WriteEndArray();
            json.WriteNumber("width", result.Width);
            json.WriteNumber("height", result.Height);
            json.WriteString("sampler_name", request.Options.Scheduler ?? "default");
            json.WriteNumber("cfg_scale", request.Options.GuidanceScale);
            json.WriteNumber("steps", request.Options.Steps);
            json.WriteNumber("batch_size", request.BatchSize);
            json.WriteString("sd_model_name", result.Model);
            json.WriteBoolean("interrupted", result.Interrupted);
            json.WriteEndObject();
        }
        return System.Text.Encoding.UTF8.GetString(output.GetBuffer(), 0, (int)output.Length);
    }

    /// <summary>
    /// A1111's progress (<c>ProgressResponse</c>): <c>progress</c> 0–1, <c>eta_relative</c> (s), <c>state</c>
    /// (<c>job_count</c>, <c>job_no</c>, <c>sampling_step</c>, <c>sampling_steps</c>, <c>interrupted</c>…),
    /// <c>current_image</c> (always null: no previews) and <c>textinfo</c>. It reports the oldest running job, or the job
    /// <c>?id_task=</c> names (its <c>force_task_id</c>).
    /// </summary>
    private static IResult Progress(HttpContext context, ImageGenerationService service)
    {
        var jobs = service.Queue.Jobs;
        string? id = context.Request.Query["id_task"];
        var job = id is null ? jobs.FirstOrDefault(j => j.Started) ?? jobs.FirstOrDefault() : jobs.FirstOrDefault(j => j.Id == id);
        double fraction = job?.Fraction ?? 0;
        double elapsed = job?.Clock.Elapsed.TotalSeconds ?? 0;
        double eta = fraction > 0 ? elapsed / fraction - elapsed : 0;
        var (step, steps) = job?.Sampling ?? (0, 0);
        return Results.Json(new
        {
            progress = fraction,
            eta_relative = eta,
            state = new
            {
                skipped = false,
                interrupted = job?.Interrupted ?? false,
                stopping_generation = false,
                job = job is null ? "" : job.Id,
                job_count = jobs.Length,
                job_timestamp = (job?.AdmittedUtc ?? DateTime.UtcNow).ToString("yyyyMMddHHmmss", CultureInfo.InvariantCulture),
                job_no = job?.Batch ?? 0,
                sampling_step = step,
                sampling_steps = steps,
            },
            current_image = (string?)null,
            textinfo = job is null ? null : job.Started ? $"Batch {job.Batch + 1} of {job.Batches}, step {step} of {steps}" : "Waiting in the queue",
        });
    }
}
