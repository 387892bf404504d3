namespace MLNet.Diffusion.Cli;

/// <summary>An error in what the user asked for (a bad value, a missing column, a file that is not there): reported as one line, exit code 2.</summary>
internal sealed class UserException(string message) : Exception(message);
