namespace MLNet.Diffusion.Tests.Docs;

/// <summary>How a documentation block's program ended.</summary>
/// <param name="ExitCode">The value its entry point returned (0 for none); null when it threw or did not finish.</param>
/// <param name="Output">What it wrote to the console.</param>
/// <param name="Failure">The exception it threw, or the timeout; null when it returned.</param>
internal sealed record SnippetRun(int? ExitCode, string Output, Exception? Failure);
