namespace MLNet.Diffusion.Benchmarks;

/// <summary>
/// Whether one of two paths measured in pairs (each pair made moments apart) is slower than chance explains: a one-sided
/// sign test per comparison, and Holm's method when several comparisons are judged together.
/// </summary>
internal static class PairedComparison
{
    /// <summary>
    /// How many of the paired generations had <paramref name="a"/> slower than <paramref name="b"/>, and the one-sided sign
    /// test's p: the chance of at least that many if neither path were slower (ties left out).
    /// </summary>
    public static (int Slower, int Pairs, double P) SignTest(IReadOnlyList<double> a, IReadOnlyList<double> b)
    {
        int slower = 0, pairs = 0;
        for (int k = 0; k < Math.Min(a.Count, b.Count); k++)
        {
            if (a[k] == b[k]) continue;
            pairs++;
            if (a[k] > b[k]) slower++;
        }
        double p = 0;
        for (int x = slower; x <= pairs; x++) p += Binomial(pairs, x) / Math.Pow(2, pairs);
        return (slower, pairs, pairs == 0 ? 1 : p);

        static double Binomial(int n, int k)
        {
            double r = 1;
            for (int i = 1; i <= k; i++) r = r * (n - k + i) / i;
            return r;
        }
    }

    /// <summary>
    /// Holm's step-down method (Holm 1979): which of the hypotheses with p-values <paramref name="p"/> are rejected with a
    /// family-wise error of at most <paramref name="alpha"/>. The k-th smallest p (from 0) is compared with α / (m − k), and
    /// the first that is not below its bound stops the rejections.
    /// </summary>
    public static bool[] HolmRejects(IReadOnlyList<double> p, double alpha)
    {
        var order = Enumerable.Range(0, p.Count).OrderBy(i => p[i]).ToArray();
        var rejected = new bool[p.Count];
        for (int k = 0; k < order.Length && p[order[k]] < alpha / (order.Length - k); k++) rejected[order[k]] = true;
        return rejected;
    }
}
