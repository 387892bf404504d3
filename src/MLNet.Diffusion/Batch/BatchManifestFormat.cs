namespace MLNet.Diffusion.Batch;

/// <summary>
/// The one definition of a batch output folder's manifest, shared by the CLI's local <c>batch</c> and the cluster's folder
/// sink, so that either reads the other's folder: the file name and the header's columns. Lines are written with
/// <see cref="CsvWriter"/> (RFC 4180 quoting) and text cells go through <see cref="FormulaGuard"/>.
/// </summary>
internal static class BatchManifestFormat
{
    /// <summary>The manifest's file name.</summary>
    public const string FileName = "manifest.csv";

    /// <summary>The header line's columns: one line per finished row.</summary>
    public static readonly string[] Columns = ["row", "prompt", "negative_prompt", "seed", "settings", "file", "seconds"];
}
