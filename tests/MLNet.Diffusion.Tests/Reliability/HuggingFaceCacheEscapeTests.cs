using System.Security.Cryptography;
using MLNet.Diffusion.Models;
using MLNet.Diffusion.Pipeline;

namespace MLNet.Diffusion.Tests.Reliability;

/// <summary>
/// Issue 12, point 1: the Hugging Face cache exception (links from <c>models--*/snapshots/&lt;rev&gt;/</c> into the
/// repository's <c>blobs/</c>) must not become a way out of the folder. A <c>blobs</c> that is a link, wherever it
/// points, grants nothing; the repository is the one the snapshot really lies in; every refusal comes from
/// <see cref="DiffusionModelFolder.Open"/> (not from ONNX Runtime), names the file and shows none of its content.
/// </summary>
public class HuggingFaceCacheEscapeTests(UntrustedFolderFixture fixture, Xunit.Abstractions.ITestOutputHelper output) : IClassFixture<UntrustedFolderFixture>
{
    private const string Repository = "models--org--tiny";
    private const string Revision = "0123abcd";

    /// <summary>A cache built by <see cref="BuildCache"/>: its root, the repository, the snapshot and the blobs folder.</summary>
    private sealed record Cache(string Root, string Repository, string Snapshot, string Blobs);

    /// <summary>
    /// An attack: given a fresh cache (the model's files as blobs, the snapshot as links into them), it rewires
    /// links and returns the snapshot-relative file it aimed at, and text from the target that must not appear in
    /// the refusal (or null).
    /// </summary>
    private delegate (string File, string? Secret) Attack(Cache cache, string outside);

    private static readonly Dictionary<string, Attack> s_attacks = new()
    {
        // ---- blobs is a link: whatever it points to, it grants nothing
        ["blobs-to-filesystem-root"] = (c, outside) =>
        {
            LinkBlobs(c, Path.GetPathRoot(outside)!);
            return (AimThroughBlobs(c, "tokenizer/vocab.json", RootRelative(StashCopy(c, "tokenizer/vocab.json", outside))), null);
        },
        ["blobs-to-cache-root"] = (c, outside) =>
        {
            // blobs → .. (the cache folder): a stolen file put beside the repositories.
            string stolen = StashCopy(c, "tokenizer/vocab.json", Path.Combine(c.Root, "stash"));
            LinkBlobs(c, "..");
            return (AimThroughBlobs(c, "tokenizer/vocab.json", Path.GetRelativePath(c.Root, stolen)), null);
        },
        ["blobs-to-parent-of-cache"] = (c, outside) =>
        {
            string parent = Path.GetDirectoryName(c.Root)!;
            string stolen = StashCopy(c, "tokenizer/vocab.json", outside);
            LinkBlobs(c, Path.Combine("..", ".."));
            return (AimThroughBlobs(c, "tokenizer/vocab.json", Path.GetRelativePath(parent, stolen)), null);
        },
        ["blobs-to-repository-itself"] = (c, outside) =>
        {
            // blobs → . : the repository's other folders (refs/, an attacker's extras) are not blobs.
            string stolen = StashCopy(c, "tokenizer/vocab.json", Path.Combine(c.Repository, "extras"));
            LinkBlobs(c, ".");
            return (AimThroughBlobs(c, "tokenizer/vocab.json", Path.GetRelativePath(c.Repository, stolen)), null);
        },
        ["blobs-to-sibling-repository-blobs"] = (c, outside) =>
        {
            // Another model's blobs in the same cache (a private model's files, say).
            string victim = Path.Combine(c.Root, "models--victim--private", "blobs");
            string stolen = StashCopy(c, "tokenizer/vocab.json", victim);
            LinkBlobs(c, Path.Combine("..", "models--victim--private", "blobs"));
            return (AimThroughBlobs(c, "tokenizer/vocab.json", Path.GetFileName(stolen)), null);
        },
        ["blobs-nested-links-to-root"] = (c, outside) =>
        {
            // blobs → hop → / : a chain of links is judged by where blobs itself is, not where the chain ends.
            Directory.CreateSymbolicLink(Path.Combine(c.Repository, "hop"), Path.GetPathRoot(outside)!);
            LinkBlobs(c, "hop");
            return (AimThroughBlobs(c, "tokenizer/vocab.json", RootRelative(StashCopy(c, "tokenizer/vocab.json", outside))), null);
        },
        ["blobs-to-real-blobs-outside-repository"] = (c, outside) =>
        {
            // The repository's blobs moved elsewhere and linked back: the link target is not inside the repository.
            Materialize(c);
            string moved = Path.Combine(outside, "moved-blobs");
            Directory.Move(c.Blobs, moved);
            Directory.CreateSymbolicLink(c.Blobs, moved);
            string stolen = StashCopy(c, "tokenizer/vocab.json", moved);
            return (AimThroughBlobs(c, "tokenizer/vocab.json", Path.GetFileName(stolen)), null);
        },

        // ---- what the blobs link lets through: configurations, ONNX files, external data
        ["json-through-blobs-link-shows-no-content"] = (c, outside) =>
        {
            string secret = $"TOPSECRET-{Guid.NewGuid():N}";
            string target = Path.Combine(outside, "secret.txt");
            File.WriteAllText(target, secret);
            LinkBlobs(c, Path.GetPathRoot(outside)!);
            return (AimThroughBlobs(c, "scheduler/scheduler_config.json", RootRelative(target)), secret);
        },
        ["onnx-through-blobs-link"] = (c, outside) =>
        {
            LinkBlobs(c, Path.GetPathRoot(outside)!);
            return (AimThroughBlobs(c, "text_encoder/model.onnx", RootRelative(StashCopy(c, "text_encoder/model.onnx", outside))), null);
        },
        ["external-data-through-blobs-link"] = (c, outside) =>
        {
            // A correct copy of the weights outside: only our containment check stands between it and ONNX Runtime.
            LinkBlobs(c, Path.GetPathRoot(outside)!);
            return (AimThroughBlobs(c, "unet/weights.pb", RootRelative(StashCopy(c, "unet/weights.pb", outside))), null);
        },
        ["external-data-blob-is-a-link-out"] = (c, outside) =>
        {
            // blobs is real, but the blob the snapshot links to is itself a link out of the cache.
            string stolen = StashCopy(c, "unet/weights.pb", outside);
            string blob = Path.Combine(c.Blobs, "deadbeef");
            File.CreateSymbolicLink(blob, stolen);
            return (AimThroughBlobs(c, "unet/weights.pb", "deadbeef"), null);
        },

        // ---- the snapshot's own location: the repository is the one it really lies in
        ["snapshots-folder-linked-into-repository-with-linked-blobs"] = (c, outside) =>
        {
            // models--org--tiny/snapshots → <outside>/models--evil--x/snapshots, whose blobs → / .
            Materialize(c);
            string evilRepository = Path.Combine(outside, "models--evil--x");
            Directory.CreateDirectory(evilRepository);
            Directory.Move(Path.Combine(c.Repository, "snapshots"), Path.Combine(evilRepository, "snapshots"));
            Directory.CreateSymbolicLink(Path.Combine(c.Repository, "snapshots"), Path.Combine(evilRepository, "snapshots"));
            Directory.CreateSymbolicLink(Path.Combine(evilRepository, "blobs"), Path.GetPathRoot(outside)!);
            string stolen = StashCopy(c, "tokenizer/vocab.json", outside);
            return (AimThroughBlobs(c, "tokenizer/vocab.json", RootRelative(stolen)), null);
        },
        ["revision-folder-linked-into-repository-with-linked-blobs"] = (c, outside) =>
        {
            // models--org--tiny/snapshots/<rev> → <outside>/models--evil--y/snapshots/<rev>, whose blobs → / .
            Materialize(c);
            string evilSnapshots = Path.Combine(outside, "models--evil--y", "snapshots");
            Directory.CreateDirectory(evilSnapshots);
            Directory.Move(c.Snapshot, Path.Combine(evilSnapshots, Revision));
            Directory.CreateSymbolicLink(c.Snapshot, Path.Combine(evilSnapshots, Revision));
            Directory.CreateSymbolicLink(Path.Combine(outside, "models--evil--y", "blobs"), Path.GetPathRoot(outside)!);
            string stolen = StashCopy(c, "tokenizer/vocab.json", outside);
            return (AimThroughBlobs(c, "tokenizer/vocab.json", RootRelative(stolen)), null);
        },
        ["snapshots-folder-linked-out-of-the-cache"] = (c, outside) =>
        {
            // models--org--tiny/snapshots → a plain folder elsewhere: the named repository's blobs (real, here
            // holding the target) is not the snapshot's repository any more, so links into it are refused.
            string vocab = Path.Combine(c.Snapshot, "tokenizer", "vocab.json");
            string blob = File.ResolveLinkTarget(vocab, returnFinalTarget: true)!.FullName;
            Materialize(c);
            string elsewhere = Path.Combine(outside, "plain", "snapshots");
            Directory.CreateDirectory(Path.GetDirectoryName(elsewhere)!);
            Directory.Move(Path.Combine(c.Repository, "snapshots"), elsewhere);
            Directory.CreateSymbolicLink(Path.Combine(c.Repository, "snapshots"), elsewhere);
            File.Delete(vocab);
            File.CreateSymbolicLink(vocab, blob); // absolute, into models--org--tiny/blobs
            return ("tokenizer/vocab.json", null);
        },
    };

    public static TheoryData<string> Attacks => [.. s_attacks.Keys];

    [Theory]
    [MemberData(nameof(Attacks))]
    public void EscapeThroughTheCacheRuleIsRefusedByTheFolderCheckNamingTheFile(string name)
    {
        var cache = BuildCache();
        string outside = Directory.CreateDirectory(Path.Combine(fixture.Root, $"outside-{Guid.NewGuid():N}")).FullName;
        var (file, secret) = s_attacks[name](cache, outside);

        var e = Assert.Throws<InvalidDataException>(() => DiffusionModelFolder.Open(cache.Snapshot));
        output.WriteLine(e.Message);
        Assert.Contains(Path.Combine(file.Split('/')), e.Message);
        Assert.Contains("outside", e.Message);
        if (secret is not null)
        {
            Assert.DoesNotContain(secret, e.Message);
            Assert.DoesNotContain($"'{secret[0]}'", e.Message); // System.Text.Json quotes the first bad character
            Assert.Null(e.InnerException);
        }
        // ONNX Runtime never sees the folder: loading the pipeline fails with the same refusal.
        var viaPipeline = Assert.Throws<InvalidDataException>(() => StableDiffusionPipeline.Load(cache.Snapshot).Dispose());
        Assert.Equal(e.Message, viaPipeline.Message);
    }

    [Fact]
    public void LinkedBlobsRefusalSaysWhyTheCacheRuleDoesNotApply()
    {
        var cache = BuildCache();
        LinkBlobs(cache, Path.GetPathRoot(cache.Root)!);
        string target = Path.Combine(fixture.Root, $"outside-{Guid.NewGuid():N}", "vocab.json");
        Directory.CreateDirectory(Path.GetDirectoryName(target)!);
        File.Copy(Path.Combine(fixture.External, "tokenizer", "vocab.json"), target);
        AimThroughBlobs(cache, "tokenizer/vocab.json", RootRelative(target));
        var e = Assert.Throws<InvalidDataException>(() => DiffusionModelFolder.Open(cache.Snapshot));
        Assert.Contains(Path.Combine(Repository, "blobs"), e.Message);
        Assert.Contains("symbolic link", e.Message);
    }

    [Fact]
    public void RealCacheLayoutLoadsDirectlyThroughALinkedCacheAndThroughALinkToTheSnapshot()
    {
        var cache = BuildCache();
        // huggingface_hub's own layout.
        using (var pipeline = StableDiffusionPipeline.Load(cache.Snapshot))
            pipeline.Generate("a red cat", 1, new GenerationOptions { Steps = 1 }).Image.Dispose();

        // ~/.cache/huggingface/hub → /data/hub: the cache reached through a link above the repository.
        string linkedCache = Path.Combine(fixture.Root, $"linked-cache-{Guid.NewGuid():N}");
        Directory.CreateSymbolicLink(linkedCache, cache.Root);
        var folder = DiffusionModelFolder.Open(Path.Combine(linkedCache, Repository, "snapshots", Revision));
        Assert.StartsWith(linkedCache, folder.Directory, StringComparison.Ordinal);
        using (StableDiffusionPipeline.Load(folder.Directory)) { }

        // ~/models/sd → <cache>/models--org--tiny/snapshots/<rev>: a user's link to the snapshot itself.
        string userLink = Path.Combine(fixture.Root, $"my-models-{Guid.NewGuid():N}");
        Directory.CreateSymbolicLink(userLink, cache.Snapshot);
        DiffusionModelFolder.Open(userLink);
        // A pipeline in a sub-folder of the revision (a repository that holds several exports).
        string nested = Path.Combine(cache.Snapshot, "onnx", "fp32");
        LinkSnapshot(nested, cache.Blobs);
        DiffusionModelFolder.Open(nested);
    }

    [Fact]
    public void PlainFolderReachedThroughALinkStillLoads()
    {
        // ~/models → /data/models: the folder as the user names it goes through a link; its files stay inside.
        string model = fixture.CopyOf(fixture.External);
        string link = Path.Combine(fixture.Root, $"models-link-{Guid.NewGuid():N}");
        Directory.CreateSymbolicLink(link, Path.GetDirectoryName(model)!);
        using var pipeline = StableDiffusionPipeline.Load(Path.Combine(link, "model"));
        pipeline.Generate("a red cat", 1, new GenerationOptions { Steps = 1 }).Image.Dispose();
    }

    // ---- helpers ----------------------------------------------------------------------------------------

    /// <summary>
    /// <c>&lt;cache&gt;/models--org--tiny/{blobs/&lt;sha256&gt;, snapshots/&lt;rev&gt;/… → ../../blobs/&lt;sha256&gt;}</c>, as
    /// huggingface_hub lays out its cache, from the test model with external UNet weights.
    /// </summary>
    private Cache BuildCache()
    {
        string root = Path.Combine(fixture.Root, $"hf-cache-{Guid.NewGuid():N}");
        string repository = Path.Combine(root, Repository);
        string snapshot = Path.Combine(repository, "snapshots", Revision);
        string blobs = Path.Combine(repository, "blobs");
        Directory.CreateDirectory(blobs);
        Directory.CreateDirectory(Path.Combine(repository, "refs"));
        File.WriteAllText(Path.Combine(repository, "refs", "main"), Revision);
        foreach (var file in Directory.GetFiles(fixture.External, "*", SearchOption.AllDirectories))
        {
            string blob = Path.Combine(blobs, BlobName(file));
            if (!File.Exists(blob)) File.Copy(file, blob);
        }
        LinkSnapshot(snapshot, blobs);
        return new Cache(root, repository, snapshot, blobs);
    }

    /// <summary>Fills a snapshot folder with relative links to the blobs of the test model's files.</summary>
    private void LinkSnapshot(string snapshot, string blobs)
    {
        foreach (var file in Directory.GetFiles(fixture.External, "*", SearchOption.AllDirectories))
        {
            string link = Path.Combine(snapshot, Path.GetRelativePath(fixture.External, file));
            Directory.CreateDirectory(Path.GetDirectoryName(link)!);
            File.CreateSymbolicLink(link, Path.GetRelativePath(Path.GetDirectoryName(link)!, Path.Combine(blobs, BlobName(file))));
        }
    }

    private static string BlobName(string file) => Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(file)));

    /// <summary>
    /// Replaces the repository's blobs folder with a link to <paramref name="target"/>. The snapshot's files become
    /// plain copies first, as an attacker would ship them, so that only the attacked file goes through blobs.
    /// </summary>
    private static void LinkBlobs(Cache c, string target)
    {
        Materialize(c);
        Directory.Move(c.Blobs, c.Blobs + ".real");
        Directory.CreateSymbolicLink(c.Blobs, target);
    }

    /// <summary>Replaces every link in the snapshot by a copy of the file it leads to.</summary>
    private static void Materialize(Cache c)
    {
        foreach (var file in Directory.GetFiles(c.Snapshot, "*", SearchOption.AllDirectories))
        {
            if (File.ResolveLinkTarget(file, returnFinalTarget: true) is not { } target) continue;
            File.Delete(file);
            File.Copy(target.FullName, file);
        }
    }

    /// <summary>Points a snapshot file at <c>../…/blobs/&lt;path&gt;</c>, the shape of every cache link.</summary>
    private static string AimThroughBlobs(Cache c, string file, string pathUnderBlobs)
    {
        string link = Path.Combine(c.Snapshot, file);
        int depth = file.Count(ch => ch == '/') + 2; // <rev>/<dirs>/file → up to the repository
        string target = string.Join('/', Enumerable.Repeat("..", depth)) + "/blobs/" + pathUnderBlobs.Replace('\\', '/');
        File.Delete(link);
        File.CreateSymbolicLink(link, target);
        return file;
    }

    /// <summary>Copies one of the model's files (as the attacker's target) into a folder; returns the copy's path.</summary>
    private static string StashCopy(Cache c, string file, string folder)
    {
        Directory.CreateDirectory(folder);
        string path = Path.Combine(c.Snapshot, file);
        string source = File.ResolveLinkTarget(path, returnFinalTarget: true)?.FullName ?? path;
        string copy = Path.Combine(folder, $"{Guid.NewGuid():N}-{Path.GetFileName(file)}");
        File.Copy(source, copy);
        return copy;
    }

    private static string RootRelative(string path) => path[Path.GetPathRoot(path)!.Length..];
}
