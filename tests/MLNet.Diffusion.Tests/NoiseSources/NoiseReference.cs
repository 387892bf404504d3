using System.Text.Json;
using MLNet.Diffusion.Schedulers;

namespace MLNet.Diffusion.Tests.NoiseSources;

/// <summary>
/// Reads <c>Data/reference/noise_reference.json</c> (written by <c>make_noise_reference.py</c> with torch and numpy) and
/// checks a noise source against one of its cases: each case seeds a fresh generator and makes one or more calls of the
/// given shapes; a call's values are compared bit for bit as float32, or, for large tensors, the first 32 and last 16
/// values bit for bit and the float64 sum and sum of squares of all the values to 1e-6 relative.
/// </summary>
internal static class NoiseReference
{
    public static readonly string Path = System.IO.Path.Combine(AppContext.BaseDirectory, "Data", "reference", "noise_reference.json");

    private static readonly Lazy<JsonDocument> Document = new(() => JsonDocument.Parse(File.ReadAllText(Path)));

    public static JsonElement Section(string name) => Document.Value.RootElement.GetProperty(name);

    /// <summary>The cases of a section (torch's sections keep them under "cases"), as (label, case) pairs.</summary>
    public static TheoryData<string, int> Cases(string section)
    {
        var root = Section(section);
        var cases = root.ValueKind == JsonValueKind.Object ? root.GetProperty("cases") : root;
        var data = new TheoryData<string, int>();
        for (int i = 0; i < cases.GetArrayLength(); i++) data.Add(section, i);
        return data;
    }

    public static JsonElement Case(string section, int index)
    {
        var root = Section(section);
        var cases = root.ValueKind == JsonValueKind.Object ? root.GetProperty("cases") : root;
        return cases[index];
    }

    /// <summary>Runs the case's calls on <paramref name="source"/> and compares each with the stored values.</summary>
    public static void Check(JsonElement @case, INoiseSource source)
    {
        var calls = @case.GetProperty("calls");
        for (int call = 0; call < calls.GetArrayLength(); call++)
        {
            int count = calls[call].EnumerateArray().Aggregate(1, (n, d) => n * d.GetInt32());
            var actual = new float[count];
            source.Fill(actual);
            string where = $"seed {@case.GetProperty("seed").GetInt64()}, call {call} of shape [{string.Join(", ", calls[call].EnumerateArray())}]";
            if (@case.TryGetProperty("values", out var values)) AssertBitEqual(Floats(values[call]), actual, 0, where);
            else CheckSummary(@case.GetProperty("summaries")[call], actual, where);
        }
    }

    public static void CheckSummary(JsonElement summary, ReadOnlySpan<float> actual, string where)
    {
        Assert.Equal(summary.GetProperty("count").GetInt32(), actual.Length);
        var first = Floats(summary.GetProperty("first"));
        var last = Floats(summary.GetProperty("last"));
        AssertBitEqual(first, actual[..first.Length], 0, where);
        AssertBitEqual(last, actual[^last.Length..], actual.Length - last.Length, where);
        double sum = 0, squares = 0;
        foreach (float v in actual) { sum += v; squares += (double)v * v; }
        AssertClose(summary.GetProperty("sum").GetDouble(), sum, actual.Length, $"{where}: sum");
        AssertClose(summary.GetProperty("sum_of_squares").GetDouble(), squares, actual.Length, $"{where}: sum of squares");
    }

    public static float[] Floats(JsonElement array) => array.EnumerateArray().Select(e => (float)e.GetDouble()).ToArray();

    private static void AssertBitEqual(float[] expected, ReadOnlySpan<float> actual, int offset, string where)
    {
        for (int i = 0; i < expected.Length; i++)
            if (BitConverter.SingleToInt32Bits(expected[i]) != BitConverter.SingleToInt32Bits(actual[i]))
                Assert.Fail($"{where}: value {offset + i} is {actual[i]:R}, torch/numpy gave {expected[i]:R}.");
    }

    // The sums are float64 sums of float32 values, so equal values give sums equal up to summation order; 1e-6 of the
    // scale (the sum of squares ≈ count for N(0, 1)) also catches a single value that is wrong by more than that.
    private static void AssertClose(double expected, double actual, int count, string where)
    {
        double scale = Math.Max(Math.Abs(expected), Math.Sqrt(count));
        Assert.True(Math.Abs(expected - actual) <= 1e-6 * scale, $"{where}: {actual:R}, expected {expected:R}.");
    }
}
