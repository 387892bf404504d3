using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Microsoft.ML;
using MLNet.Diffusion.Tests.Cli;
using MLNet.Diffusion.Tests.TestModels;

#pragma warning disable MEAI001 // IImageGenerator is experimental in Microsoft.Extensions.AI

namespace MLNet.Diffusion.Tests.Pipeline;

/// <summary>
/// One home for settings and their limits: every entry point (the engine, ML.NET's options, the DI validator, the
/// <c>IImageGenerator</c> and the command line) refuses the same bad value with the same words, naming the setting as
/// that entry point spells it.
/// </summary>
public sealed class SettingLimitsTests : IClassFixture<SettingLimitsTests.Model>
{
    public sealed class Model : IDisposable
    {
        private readonly TempModelFolder _folder = TestModelFactory.CreateTemp();

        public string Path => _folder.Path;

        public void Dispose() => _folder.Dispose();
    }

    private readonly Model _model;

    public SettingLimitsTests(Model model) => _model = model;

    public static TheoryData<string, string> BadValues => new()
    {
        { "steps", "must be from 1 to 1000; got 0." },
        { "width", "must be a multiple of 8 from 8 to 4096 pixels (or null for the model's default size); got 100." },
        { "guidance", "must be a finite number; got NaN." },
        { "eta", "must be from 0 to 1; got 2." },
    };

    [Theory]
    [MemberData(nameof(BadValues))]
    public async Task EveryEntryPointRefusesTheSameValueWithTheSameWords(string setting, string words)
    {
        void Apply(GenerationOptions o)
        {
            switch (setting)
            {
                case "steps": o.Steps = 0; break;
                case "width": o.Width = 100; break;
                case "guidance": o.GuidanceScale = float.NaN; break;
                case "eta": o.Eta = 2; break;
            }
        }

        var messages = new List<string>();

        using var pipeline = StableDiffusionPipeline.Load(_model.Path);
        var engineOptions = new GenerationOptions();
        Apply(engineOptions);
        messages.Add(Assert.ThrowsAny<ArgumentException>(() => pipeline.Generate("a cat", 1, engineOptions)).Message);

        var mlOptions = new DiffusionOptions { ModelPath = _model.Path };
        switch (setting)
        {
            case "steps": mlOptions.Steps = 0; break;
            case "width": mlOptions.Width = 100; break;
            case "guidance": mlOptions.GuidanceScale = float.NaN; break;
            case "eta": mlOptions.Eta = 2; break;
        }
        messages.Add(Assert.ThrowsAny<ArgumentException>(() => new MLContext().Transforms.GenerateImages(mlOptions)).Message);

        var services = new ServiceCollection();
        services.AddStableDiffusion(o => { o.ModelPath = _model.Path; Apply(o.DefaultGenerationOptions); });
        using (var container = services.BuildServiceProvider())
            messages.Add(Assert.Throws<OptionsValidationException>(() => container.GetRequiredService<StableDiffusionPipeline>()).Message);

        var generatorOptions = new ImageGenerationOptions { AdditionalProperties = [] };
        switch (setting)
        {
            case "steps": generatorOptions.AdditionalProperties["steps"] = 0; break;
            case "width": generatorOptions.ImageSize = new System.Drawing.Size(100, 64); break;
            case "guidance": generatorOptions.AdditionalProperties["guidance_scale"] = double.NaN; break;
            case "eta": generatorOptions.AdditionalProperties["eta"] = 2.0; break;
        }
        var generator = new StableDiffusionImageGenerator(pipeline);
        messages.Add((await Assert.ThrowsAnyAsync<ArgumentException>(() => generator.GenerateImagesAsync("a cat", generatorOptions))).Message);

        string[] args = setting switch
        {
            "steps" => ["--steps", "0"],
            "width" => ["--size", "100x64"],
            "guidance" => ["--guidance", "NaN"],
            _ => ["--eta", "2"],
        };
        var cli = CliRun.Run(["generate", "a cat", "--model", _model.Path, .. args]);
        Assert.Equal(MLNet.Diffusion.Cli.Program.UsageError, cli.ExitCode);
        messages.Add(string.Join("\n", cli.ErrLines));

        Assert.All(messages, message => Assert.Contains(words, message));
    }
}
