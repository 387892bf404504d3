using System.Globalization;
using System.Reflection;
using MLNet.Diffusion.Cli.Commands;
using MLNet.Diffusion.Cli.Output;
using MLNet.Diffusion.Pipeline;
using MLNet.Diffusion.Runtime;
using Spectre.Console.Cli;

namespace MLNet.Diffusion.Cli;

/// <summary>
/// The <c>mlnet-diffusion</c> command-line tool: <c>generate</c>, <c>batch</c>, <c>grid</c>, <c>info</c> and <c>serve</c>.
/// Exit codes: 0 success, 1 a failure while running, 2 a bad command line or input, 69 a cluster that cannot be reached,
/// 74 an output file that could not be read or written, 130 cancelled (Ctrl+C).
/// </summary>
public static class Program
{
    /// <summary>Exit code: done.</summary>
    public const int Success = 0;

    /// <summary>Exit code: something failed while running (a model that does not load, an I/O error).</summary>
    public const int Failure = 1;

    /// <summary>Exit code: a bad command line, option value or input file.</summary>
    public const int UsageError = 2;

    /// <summary>
    /// Exit code: a file in the output folder could not be read or written while running (a full disk, a file or folder
    /// removed or replaced by another program, no permission); sysexits.h's <c>EX_IOERR</c>. Not a usage error: what was
    /// finished stays finished, and the same command continues once the folder is fixed.
    /// </summary>
    public const int IoError = 74;

    /// <summary>Exit code: the cluster named by <c>--cluster</c> could not be reached within <c>--connect-timeout</c> (no worker
    /// on a localhost port, a Redis server or membership database that does not answer); sysexits.h's <c>EX_UNAVAILABLE</c>.</summary>
    public const int ClusterUnavailable = 69;

    /// <summary>Exit code: cancelled with Ctrl+C (128 + SIGINT, as shells report it).</summary>
    public const int Cancelled = 130;

    /// <summary>Exit code: a model failed while running (ONNX Runtime refused a call of the text encoder, UNet or VAE: a token
    /// id beyond the embedding table, a shape that does not fit, memory it could not get). The message names the file.</summary>
    public const int ModelFailure = 4;

    /// <summary>The tool's entry point: Ctrl+C cancels the running command cleanly (press it twice to stop at once).</summary>
    public static int Main(string[] args)
    {
        using var cancellation = new CancellationTokenSource();
        ConsoleCancelEventHandler onCancel = (_, e) =>
        {
            if (cancellation.IsCancellationRequested) return; // second Ctrl+C: let the process end
            e.Cancel = true;
            Console.Error.WriteLine("Cancelling… (Ctrl+C again to stop at once)");
            cancellation.Cancel();
        };
        Console.CancelKeyPress += onCancel;
        try
        {
            return Run(args, Console.Out, Console.Error, cancellation.Token);
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
        }
    }

    /// <summary>Runs the tool in-process with the given writers and cancellation token; returns the exit code.</summary>
    /// <param name="args">The command line, without the program name.</param>
    /// <param name="output">Standard output (progress, results, help).</param>
    /// <param name="error">Standard error (one-line errors and warnings).</param>
    /// <param name="cancellationToken">Cancels the running command; it then returns <see cref="Cancelled"/>.</param>
    public static int Run(string[] args, TextWriter output, TextWriter error, CancellationToken cancellationToken = default) =>
        Run(args, new CliEnvironment(output, error, cancellationToken));

    internal static int Run(string[] args, CliEnvironment environment)
    {
        ArgumentNullException.ThrowIfNull(args);
        environment.Verbose = args.Contains("--verbose");
        var app = new CommandApp();
        app.Configure(config =>
        {
            config.SetApplicationName("mlnet-diffusion");
            config.SetApplicationVersion(typeof(Program).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "0");
            config.ConfigureConsole(environment.Console);
            config.Settings.Culture = CultureInfo.InvariantCulture;
            config.Settings.Registrar.RegisterInstance(environment);
            config.Settings.StrictParsing = true;
            config.PropagateExceptions();
            config.SetHelpProvider(new CliHelpProvider(config.Settings));
            config.AddCommand<GenerateCommand>("generate")
                .WithDescription("Generate images from a prompt.")
                .WithExample("generate", "\"a red circle on a white background\"", "--seed", "42", "--count", "4")
                .WithExample("generate", "\"a lighthouse at dusk\"", "--model", "/models/sd15-onnx", "--steps", "30", "--size", "512x512");
            config.AddCommand<BatchCommand>("batch")
                .WithDescription("Generate an image per row of a CSV/TSV table, with a manifest; rerun to resume after an interruption.")
                .WithExample("batch", "prompts.csv", "--prompt-column", "prompt", "--batch-size", "4", "--out", "images");
            config.AddCommand<WorkerCommand>("worker")
                .WithDescription("Run a cluster worker: an Orleans silo that serves generation work on its devices, for batch --cluster.")
                .WithExample("worker")
                .WithExample("worker", "--silo-port", "11112", "--gateway-port", "30001", "--primary-port", "11111")
                .WithExample("worker", "--cluster", "redis://cache1:6379", "--worker-device", "cuda:0", "--worker-device", "cuda:1");
            config.AddCommand<GridCommand>("grid")
                .WithDescription("Generate a contact sheet (prompts x seeds) as one labelled PNG, with a legend in NAME.json.")
                .WithExample("grid", "\"a red circle\"", "\"a blue square\"", "--seeds", "4")
                .WithExample("grid", "\"a yellow star\"", "--seeds", "1,7,42");
            config.AddCommand<InfoCommand>("info")
                .WithDescription("Show what a model folder holds: components with their ONNX inputs and outputs, scheduler, VAE scaling factor, default size, device.")
                .WithExample("info", "--model", "/models/sd15-onnx");
            config.AddCommand<ServeCommand>("serve")
                .WithDescription("Serve the engine over HTTP: OpenAI's images API, AUTOMATIC1111's /sdapi/v1 API and a web page; loopback only unless an API key is set.")
                .WithExample("serve")
                .WithExample("serve", "--model", "sd15=/models/sd15-onnx", "--urls", "http://0.0.0.0:7860", "--api-key", "KEY");
        });
        try
        {
            return app.Run(args, environment.CancellationToken);
        }
        catch (OperationCanceledException) when (environment.CancellationToken.IsCancellationRequested)
        {
            environment.Error.WriteLine("Cancelled.");
            return Cancelled;
        }
        catch (OutputException e)
        {
            environment.Error.WriteLine("error: " + CliEnvironment.OneLine(e.Message));
            if (environment.Verbose) environment.Error.WriteLine(e.ToString());
            return IoError;
        }
        catch (Exception e)
        {
            return ReportError(e, environment);
        }
    }

    private static int ReportError(Exception e, CliEnvironment environment)
    {
        while (e is TargetInvocationException or AggregateException && e.InnerException is not null) e = e.InnerException!;
        // ModelRunException: a component file failed at run time; its message names the file, the inputs and ONNX
        // Runtime's reason. ML.NET's transforms may wrap it, so it is looked for down the chain of inner exceptions.
        for (var inner = e; inner is not null; inner = inner.InnerException)
        {
            if (inner is ModelRunException failure)
            {
                environment.Error.WriteLine("error: " + CliEnvironment.OneLine(failure.Message));
                if (environment.Verbose) environment.Error.WriteLine(e.ToString());
                return ModelFailure;
            }
        }
        // NonFiniteLatentsException: NaN or ±Infinity appeared; its message says where (step, file, scheduler, σ) and
        // what is known about the cause, so it is reported like bad input, not as a crash.
        bool usage = e is UserException or CommandAppException or ArgumentException or FileNotFoundException or DirectoryNotFoundException
            or InvalidDataException or NotSupportedException or NonFiniteLatentsException;
        environment.Error.WriteLine("error: " + CliEnvironment.OneLine(MessageOf(e)));
        if (environment.Verbose) environment.Error.WriteLine(e.ToString());
        return usage ? UsageError : Failure;
    }

    /// <summary>The message without .NET's " (Parameter 'name')" suffix, which means nothing to a user of the tool.</summary>
    internal static string MessageOf(Exception e)
    {
        var message = e.Message;
        if (e is ArgumentException { ParamName: { } name })
        {
            var suffix = $" (Parameter '{name}')";
            int at = message.IndexOf(suffix, StringComparison.Ordinal);
            if (at >= 0) message = message.Remove(at, suffix.Length);
        }
        return message;
    }
}
