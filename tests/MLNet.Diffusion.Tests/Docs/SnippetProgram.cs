using System.Reflection;
using System.Runtime.Loader;
using System.Text;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.Emit;
using Microsoft.CodeAnalysis.Text;

namespace MLNet.Diffusion.Tests.Docs;

/// <summary>
/// A documentation code block compiled with Roslyn as a C# top-level program, the way <c>dotnet new console</c> compiles
/// <c>Program.cs</c> (C# latest, nullable on, the SDK's implicit usings, warnings reported), against the assemblies an
/// application that references the library has; then run in this process.
/// </summary>
/// <remarks>
/// A <c>#line</c> directive maps the code to its place in the documentation file, so compiler messages and the stack
/// frames of an exception both name the file's own line (e.g. <c>README.md:line 47</c>).
/// </remarks>
internal sealed class SnippetProgram
{
    /// <summary>The global usings of an SDK console project with <c>ImplicitUsings</c> enabled.</summary>
    private const string ImplicitUsings = """
        global using global::System;
        global using global::System.Collections.Generic;
        global using global::System.IO;
        global using global::System.Linq;
        global using global::System.Net.Http;
        global using global::System.Threading;
        global using global::System.Threading.Tasks;
        """;

    /// <summary>
    /// The assemblies an application referencing the library and the packages the README names has: the shared
    /// framework, the library with its dependencies (ML.NET, ImageAnalytics, OnnxTransformer, ONNX Runtime, tokenizers,
    /// dependency injection, Microsoft.Extensions.AI, SkiaSharp). The test host's own assemblies (xunit, Roslyn, the
    /// CLI, the tests) are left out, so a block cannot lean on them.
    /// </summary>
    private static readonly Lazy<IReadOnlyList<MetadataReference>> References = new(LoadReferences);

    private static readonly string[] ApplicationAssemblyPrefixes =
        ["MLNet.Diffusion", "Microsoft.ML", "Microsoft.Extensions.", "Microsoft.Bcl.", "System.", "SkiaSharp", "OnnxSharp", "Google.Protobuf"];

    private static readonly string[] HostAssemblyNames = ["MLNet.Diffusion.Tests", "MLNet.Diffusion.Cli"];

    private readonly byte[] _image;
    private readonly byte[] _symbols;

    private SnippetProgram(byte[] image, byte[] symbols)
    {
        _image = image;
        _symbols = symbols;
    }

    /// <summary>
    /// Compiles <paramref name="block"/>; on failure returns null and, in <paramref name="problems"/>, one line per
    /// error or warning naming the line of <paramref name="fileName"/> and quoting it.
    /// </summary>
    public static SnippetProgram? Compile(ReadmeCodeBlock block, string fileName, out IReadOnlyList<string> problems)
    {
        var parse = CSharpParseOptions.Default.WithLanguageVersion(LanguageVersion.Latest);
        string source = $"#line {block.FirstLine} \"{fileName}\"\n{block.Code}\n";
        var trees = new[]
        {
            CSharpSyntaxTree.ParseText(SourceText.From(source, Encoding.UTF8), parse, path: fileName),
            CSharpSyntaxTree.ParseText(SourceText.From(ImplicitUsings, Encoding.UTF8), parse, path: "ImplicitUsings.g.cs"),
        };
        var options = new CSharpCompilationOptions(OutputKind.ConsoleApplication, nullableContextOptions: NullableContextOptions.Enable,
            optimizationLevel: OptimizationLevel.Debug, allowUnsafe: false);
        var compilation = CSharpCompilation.Create($"ReadmeBlock{block.Index}", trees, References.Value, options);

        using var image = new MemoryStream();
        using var symbols = new MemoryStream();
        var result = compilation.Emit(image, symbols, options: new EmitOptions(debugInformationFormat: DebugInformationFormat.PortablePdb));
        var codeLines = block.Code.Split('\n');
        problems = [.. result.Diagnostics
            .Where(d => d.Severity >= DiagnosticSeverity.Warning)
            .OrderBy(d => d.Location.SourceSpan.Start)
            .Select(d => Describe(d, block, codeLines))];
        return result.Success && problems.Count == 0 ? new SnippetProgram(image.ToArray(), symbols.ToArray()) : null;
    }

    /// <summary>
    /// Runs the program's entry point with no arguments, in <paramref name="workingDirectory"/>, capturing what it writes
    /// to the console. The program runs in its own collectible load context, unloaded afterwards.
    /// </summary>
    /// <returns>The exit code (0 when the program returns nothing), what it wrote, and the exception it threw, if any.</returns>
    public SnippetRun Run(string workingDirectory, TimeSpan timeout)
    {
        var context = new AssemblyLoadContext("readme-block", isCollectible: true);
        var output = new StringWriter();
        var console = TextWriter.Synchronized(output);
        var (previousOut, previousError, previousDirectory) = (Console.Out, Console.Error, Environment.CurrentDirectory);
        try
        {
            var assembly = context.LoadFromStream(new MemoryStream(_image), new MemoryStream(_symbols));
            var entry = assembly.EntryPoint ?? throw new InvalidOperationException("The compiled block has no entry point.");
            object?[]? arguments = entry.GetParameters().Length == 0 ? null : [Array.Empty<string>()];
            Console.SetOut(console);
            Console.SetError(console);
            Environment.CurrentDirectory = workingDirectory;
            var run = Task.Run(() => entry.Invoke(null, BindingFlags.DoNotWrapExceptions, null, arguments, null));
            if (!run.Wait(timeout))
                return new SnippetRun(null, output.ToString(), new TimeoutException($"The block did not finish within {timeout.TotalSeconds:F0} s."));
            return new SnippetRun(run.Result as int? ?? 0, output.ToString(), null);
        }
        catch (AggregateException e) when (e.InnerExceptions.Count == 1)
        {
            return new SnippetRun(null, output.ToString(), e.InnerExceptions[0]);
        }
        finally
        {
            Console.SetOut(previousOut);
            Console.SetError(previousError);
            Environment.CurrentDirectory = previousDirectory;
            context.Unload();
        }
    }

    private static string Describe(Diagnostic diagnostic, ReadmeCodeBlock block, string[] codeLines)
    {
        var span = diagnostic.Location.GetMappedLineSpan();
        string where = span.IsValid && span.Path.Length > 0 ? $"{span.Path} line {span.StartLinePosition.Line + 1}" : "(no line)";
        int index = span.StartLinePosition.Line + 1 - block.FirstLine;
        string quoted = span.IsValid && index >= 0 && index < codeLines.Length ? $"\n        {codeLines[index].Trim()}" : "";
        string severity = diagnostic.Severity == DiagnosticSeverity.Error ? "error" : "warning";
        return $"{where}: {severity} {diagnostic.Id}: {diagnostic.GetMessage(System.Globalization.CultureInfo.InvariantCulture)}{quoted}";
    }

    private static IReadOnlyList<MetadataReference> LoadReferences()
    {
        string frameworkDirectory = Path.GetDirectoryName(typeof(object).Assembly.Location)!;
        var trusted = (AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES") as string)?.Split(Path.PathSeparator)
            ?? throw new InvalidOperationException("The runtime lists no trusted platform assemblies to compile against.");
        return [.. trusted
            .Where(path => path.EndsWith(".dll", StringComparison.OrdinalIgnoreCase))
            .Where(path => Path.GetDirectoryName(path) == frameworkDirectory || IsApplicationAssembly(Path.GetFileNameWithoutExtension(path)))
            .Select(path => MetadataReference.CreateFromFile(path))];
    }

    private static bool IsApplicationAssembly(string name) =>
        !HostAssemblyNames.Contains(name, StringComparer.OrdinalIgnoreCase)
        && ApplicationAssemblyPrefixes.Any(prefix => name.StartsWith(prefix, StringComparison.OrdinalIgnoreCase));
}
