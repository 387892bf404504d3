using System.Diagnostics;
using System.Globalization;
using MLNet.Diffusion.ModelBuilder.Demo;

namespace MLNet.Diffusion.ModelBuilder;

/// <summary>The command line: <c>demo --out &lt;dir&gt;</c> builds the built-in demo model, <c>demo-xl --out &lt;dir&gt;</c> its
/// SDXL-layout sibling, <c>demo-flow --out &lt;dir&gt;</c> its Stable Diffusion 3-layout (flow-matching) sibling.</summary>
public static class Program
{
    /// <summary>The usage text printed for <c>--help</c> and on bad arguments.</summary>
    public const string Usage =
        "Usage: dotnet run --project src/MLNet.Diffusion.ModelBuilder -- demo|demo-xl|demo-flow --out <dir>\n" +
        "\n" +
        "Commands:\n" +
        "  demo --out <dir>   Build the built-in demo model (a Stable Diffusion ONNX folder, 256x256 images,\n" +
        "                     about 0.5 MB) into <dir>. <dir> must be new, empty or an earlier demo model.\n" +
        "  demo-xl --out <dir>\n" +
        "                     Build the demo model's SDXL-layout sibling (two text encoders, pooled embeddings,\n" +
        "                     time ids; the same pictures) into <dir>, under the same rule.\n" +
        "  demo-flow --out <dir>\n" +
        "                     Build the demo model's Stable Diffusion 3-layout sibling (a flow-matching\n" +
        "                     transformer, CLIP-L, CLIP-G and T5, a 16-channel VAE; the same pictures) into <dir>.\n" +
        "  --help             Show this text.\n";

    /// <summary>Runs the command line; returns the process exit code (0 success, 1 failure, 2 bad arguments).</summary>
    public static int Main(string[] args)
    {
        ArgumentNullException.ThrowIfNull(args);
        if (args.Length == 1 && args[0] is "--help" or "-h" or "help")
        {
            Console.Out.Write(Usage);
            return 0;
        }
        if (args.Length == 0 || args[0] is not ("demo" or "demo-xl" or "demo-flow"))
            return Fail(args.Length == 0 ? "No command given." : $"Unknown command '{args[0]}'.");
        string? output = null;
        for (int i = 1; i < args.Length; i++)
        {
            if (args[i] is "--out" or "-o" && i + 1 < args.Length && output is null) output = args[++i];
            else return Fail($"Unexpected argument '{args[i]}'.");
        }
        string kind = args[0] switch { "demo-xl" => "XL ", "demo-flow" => "flow ", _ => "" };
        if (string.IsNullOrWhiteSpace(output)) return Fail($"The {args[0]} command needs --out <dir>.");
        try
        {
            var clock = Stopwatch.StartNew();
            string version;
            switch (args[0])
            {
                case "demo-xl": DemoXlModelBuilder.Build(output); version = DemoXlModelBuilder.Version; break;
                case "demo-flow": DemoFlowModelBuilder.Build(output); version = DemoFlowModelBuilder.Version; break;
                default: DemoModelBuilder.Build(output); version = DemoModelBuilder.Version; break;
            }
            var full = Path.GetFullPath(output);
            Console.Out.WriteLine(string.Format(CultureInfo.InvariantCulture,
                "Built the demo {0}model ({1}) in {2} ({3:F2} MB, {4:F1} s).",
                kind, version, full, DemoModelBuilder.FolderSize(full) / 1e6, clock.Elapsed.TotalSeconds));
            return 0;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return 1;
        }
    }

    private static int Fail(string message)
    {
        Console.Error.WriteLine($"error: {message}");
        Console.Error.Write(Usage);
        return 2;
    }
}
