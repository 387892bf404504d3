using System.Reflection;
using System.Runtime.CompilerServices;
using Microsoft.ML;
using Microsoft.ML.Runtime;

namespace MLNet.Diffusion.Transforms;

/// <summary>
/// The ML.NET environment a diffusion transform runs in, with the device settings read from it as <c>ApplyOnnxModel</c>
/// reads them when the estimator is made: <see cref="MLContext.GpuDeviceId"/> and <see cref="MLContext.FallbackToCpu"/>.
/// </summary>
/// <remarks>
/// Catalog extension methods see only the <see cref="TransformsCatalog"/>, whose environment is the
/// <see cref="MLContext"/>'s inner environment (not the context itself); ML.NET keeps that link internal. It is read
/// here through the catalog's <c>_env</c> field (an <see cref="UnsafeAccessorAttribute"/>) and the device settings
/// through the environment's <c>GpuDeviceId</c>/<c>FallbackToCpu</c> properties (reflection), both checked on
/// Microsoft.ML 6.0.0 (the tests check them). Both routes fail with a message naming the workaround if a later ML.NET changes them.
/// The <see cref="Environment"/> of a context and of its catalogs is the same object, so transforms made either way
/// share loaded models.
/// </remarks>
internal sealed record DiffusionHost(IHostEnvironment Environment, int? GpuDeviceId, bool FallbackToCpu)
{
    [UnsafeAccessor(UnsafeAccessorKind.Field, Name = "_env")]
    private static extern ref IHostEnvironment CatalogEnvironment(TransformsCatalog catalog);

    /// <summary>The host of <paramref name="context"/>.</summary>
    public static DiffusionHost From(MLContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        return new DiffusionHost(EnvironmentOf(context.Transforms), context.GpuDeviceId, context.FallbackToCpu);
    }

    /// <summary>The host of the context that owns <paramref name="catalog"/>.</summary>
    public static DiffusionHost From(TransformsCatalog catalog)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        var env = EnvironmentOf(catalog);
        return new DiffusionHost(env, Read<int?>(env, nameof(MLContext.GpuDeviceId)), Read<bool>(env, nameof(MLContext.FallbackToCpu)));
    }

    private static IHostEnvironment EnvironmentOf(TransformsCatalog catalog)
    {
        try
        {
            return CatalogEnvironment(catalog) ?? throw Unavailable("TransformsCatalog._env is null", null);
        }
        catch (MissingFieldException e)
        {
            throw Unavailable("TransformsCatalog has no '_env' field", e);
        }
    }

    private static T Read<T>(IHostEnvironment env, string name)
    {
        for (var type = env.GetType(); type is not null; type = type.BaseType)
        {
            var property = type.GetProperty(name, BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.DeclaredOnly);
            if (property?.PropertyType == typeof(T)) return (T)property.GetValue(env)!;
        }
        throw Unavailable($"the catalog's environment ({env.GetType().Name}) has no {name} property of type {typeof(T).Name}", null);
    }

    private static InvalidOperationException Unavailable(string what, Exception? inner) => new(
        $"MLNet.Diffusion cannot read the MLContext settings behind mlContext.Transforms in this version of Microsoft.ML ({what}). " +
        "Create the estimator with its constructor instead, e.g. new DiffusionEstimator(mlContext, options), which reads MLContext.GpuDeviceId and FallbackToCpu directly.", inner);
}
