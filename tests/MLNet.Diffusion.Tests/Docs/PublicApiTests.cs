namespace MLNet.Diffusion.Tests.Docs;

/// <summary>
/// The public surface is small, lives in the namespaces a user types, and is the one the checked baseline
/// (<c>src/MLNet.Diffusion/PublicAPI.Unshipped.txt</c>, enforced by the public-API analyzer) declares.
/// </summary>
public sealed class PublicApiTests
{
    private static readonly string[] UserNamespaces =
        ["MLNet.Diffusion", "MLNet.Diffusion.Schedulers", "Microsoft.ML", "Microsoft.Extensions.DependencyInjection"];

    private static Type[] PublicTypes() =>
        typeof(StableDiffusionPipeline).Assembly.GetExportedTypes().Where(t => !t.IsNested).ToArray();

    [Fact]
    public void PublicTypesLiveInTheFourNamespacesAUserTypes()
    {
        var stray = PublicTypes().Where(t => !UserNamespaces.Contains(t.Namespace)).Select(t => t.FullName).ToArray();
        Assert.True(stray.Length == 0, "public types outside the user namespaces: " + string.Join(", ", stray));
    }

    [Fact]
    public void ThePublicSurfaceStaysSmall()
    {
        var types = PublicTypes();
        Assert.True(types.Length <= 40, $"{types.Length} public types (at most 40): {string.Join(", ", types.Select(t => t.Name).Order())}");
    }

    [Fact]
    public void TheBaselineDeclaresExactlyThePublicTypes()
    {
        var baseline = File.ReadAllLines(Path.Combine(RepositoryRoot(), "src", "MLNet.Diffusion", "PublicAPI.Unshipped.txt"))
            .Where(line => line.Length > 0 && !line.StartsWith('#') && !line.Contains("->", StringComparison.Ordinal) && !line.Contains('(') && !line.Contains('='))
            .Select(line => line.Split('<')[0])
            .Order(StringComparer.Ordinal)
            .ToArray();
        var actual = PublicTypes().Select(t => t.FullName!.Split('`')[0]).Order(StringComparer.Ordinal).ToArray();
        Assert.Equal(actual, baseline);
    }

    private static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "MLNet.Diffusion.sln"))) return dir.FullName;
        throw new DirectoryNotFoundException($"No MLNet.Diffusion.sln above {AppContext.BaseDirectory}.");
    }
}
