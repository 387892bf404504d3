using MLNet.Diffusion.Benchmarks;

namespace MLNet.Diffusion.Tests.Performance;

/// <summary>The benchmarks' "never slower" judgement: the sign test's p-values and Holm's method over several rows.</summary>
public class PairedComparisonTests
{
    [Fact]
    public void TheSignTestCountsTheLossesLeavesTiesOutAndGivesTheBinomialTail()
    {
        double[] a = [2, 2, 2, 2, 2, 2, 2, 2, 0, 5];
        double[] b = [1, 1, 1, 1, 1, 1, 1, 1, 1, 5]; // the last pair is a tie

        var (slower, pairs, p) = PairedComparison.SignTest(a, b);

        Assert.Equal(8, slower);
        Assert.Equal(9, pairs);
        Assert.Equal(10.0 / 512, p, 12); // P(X ≥ 8), X ~ Binomial(9, 1/2) = (9 + 1) / 2⁹
        Assert.Equal(1.0 / 512, PairedComparison.SignTest(a[..8].Append(3).ToArray(), b[..9]).P, 12);
        Assert.Equal(1 - 1.0 / 512, PairedComparison.SignTest(b, a).P, 12); // the other way round, 1 of 9: P(X ≥ 1) = 1 − P(X = 0)
    }

    [Fact]
    public void HolmRejectsInOrderOfPUntilOneMissesItsBound()
    {
        // m = 4: bounds 0.0125, 0.0167, 0.025, 0.05 for the smallest to the largest p.
        Assert.Equal([true, false, false, true], PairedComparison.HolmRejects([0.01, 0.04, 0.03, 0.005], 0.05));
        Assert.Equal([true, true, true, true], PairedComparison.HolmRejects([0.01, 0.04, 0.02, 0.005], 0.05));
        // Ten rows of 9 pairs: 8 of 9 lost (p ≈ 0.0195) is not enough beside nine unremarkable rows; 9 of 9 (p ≈ 0.002) is.
        double[] rows = [0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 10.0 / 512];
        Assert.DoesNotContain(true, PairedComparison.HolmRejects(rows, 0.05));
        rows[^1] = 1.0 / 512;
        Assert.Equal(Enumerable.Range(0, 10).Select(i => i == 9), PairedComparison.HolmRejects(rows, 0.05));
    }
}
