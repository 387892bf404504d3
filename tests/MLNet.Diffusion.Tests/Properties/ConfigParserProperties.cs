using CsCheck;
using MLNet.Diffusion.Schedulers;

namespace MLNet.Diffusion.Tests.Properties;

/// <summary>The scheduler configuration parser refuses bad input only with <see cref="InvalidDataException"/>.</summary>
public class ConfigParserProperties
{
    private static readonly Gen<string> JsonFragments = Picks.OneOf(
        "{", "}", "[", "]", ",", ":", "\"beta_start\"", "\"num_train_timesteps\"", "\"x\"", "1e400", "-Infinity", "NaN",
        "null", "true", "0.00085", "-3", "\"scaled_linear\"", "\\u0000", "\"", " ").Array[0, 30].Select(parts => string.Concat(parts));

    [Fact]
    public void ArbitraryTextParsesOrFailsWithInvalidData()
    {
        Gen.OneOf(JsonFragments, Gen.String).Sample(text =>
        {
            SchedulerConfig config;
            try { config = SchedulerConfig.Parse(text, "prop.json"); }
            catch (InvalidDataException e) { Assert.Contains("prop.json", e.Message); return; }
            foreach (var key in config.Keys.ToArray())
            {
                Swallow(() => config.GetDouble(key, 0));
                Swallow(() => config.GetInt(key, 0));
                Swallow(() => config.GetBool(key, false));
                Swallow(() => config.GetString(key, ""));
                Swallow(() => config.GetDoubleArray(key));
            }
            // Building a scheduler from it either works or reports bad data / unsupported settings.
            try { SchedulerFactory.Create("ddim", config).SetTimesteps(10); }
            catch (Exception e) when (e is InvalidDataException or NotSupportedException) { }
        }, iter: 2000);
    }

    private static void Swallow(Action read)
    {
        try { read(); }
        catch (InvalidDataException e) { Assert.Contains("prop.json", e.Message); }
    }
}
