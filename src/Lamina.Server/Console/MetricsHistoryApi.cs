using System.Globalization;
using System.Text.Json.Serialization;
using Lamina.Server.Lambda;
using Lamina.Server.Protocols;

namespace Lamina.Server.WebConsole;

/// <summary>
/// Lamina's operator API over <see cref="MetricsHistory"/> (issue #26), signed like the other <c>/lamina/v1/</c> APIs:
/// <c>GET /lamina/v1/metrics/functions</c> (every function's totals over the last <c>minutes</c>) and
/// <c>GET /lamina/v1/metrics/functions/{name}</c> (one sample per minute). JSON rather than CloudWatch's GetMetricData:
/// the console needs per-minute percentiles and Lamina's own series (cold starts, concurrency) in one small request,
/// and a GetMetricData surface (the Query protocol, statistics, metric math) is a service of its own, which can be
/// built on the same history later.
/// </summary>
internal static class MetricsHistoryApi
{
    public static IEndpointRouteBuilder MapMetricsHistoryApi(this IEndpointRouteBuilder endpoints)
    {
        // Created now, so it listens from the server's start rather than from the first request.
        endpoints.ServiceProvider.GetRequiredService<MetricsHistory>();
        endpoints.MapGet("/lamina/v1/metrics/functions", Totals);
        endpoints.MapGet("/lamina/v1/metrics/functions/{name}", Series);
        return endpoints;
    }

    private static IResult Totals(HttpContext context, MetricsHistory history)
    {
        if (Minutes(context, 60) is not { } minutes)
        {
            return MinutesError();
        }
        var response = new FunctionTotalsResponse { Minutes = minutes, Functions = history.Totals(minutes) };
        return FunctionsApi.Json(response, ConsoleJsonContext.Default.FunctionTotalsResponse);
    }

    private static IResult Series(string name, HttpContext context, MetricsHistory history)
    {
        if (Minutes(context, 60) is not { } minutes)
        {
            return MinutesError();
        }
        if (!IsFunctionName(name))
        {
            return AwsError.InvalidParameter($"{name} is not a function name");
        }
        var (samples, concurrent) = history.Series(name, minutes);
        var response = new FunctionSeriesResponse { FunctionName = name, Minutes = minutes, ConcurrentExecutions = concurrent, Samples = samples };
        return FunctionsApi.Json(response, ConsoleJsonContext.Default.FunctionSeriesResponse);
    }

    private static int? Minutes(HttpContext context, int fallback)
    {
        if (FunctionsApi.QueryValue(context, "minutes") is not { Length: > 0 } text)
        {
            return fallback;
        }
        return int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var minutes) && minutes is >= 1 and <= MetricsHistory.MinutesKept
            ? minutes
            : null;
    }

    // A function's bare name, as the metrics label it (1 to 64 letters, digits, - and _); ARNs are not taken.
    private static bool IsFunctionName(string name) =>
        name.Length is >= 1 and <= 64 && name.All(static c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_');

    private static AwsError MinutesError() => AwsError.InvalidParameter($"minutes must be a number from 1 to {MetricsHistory.MinutesKept}");
}

internal sealed class FunctionTotalsResponse
{
    public int Minutes { get; set; }
    public List<FunctionTotals> Functions { get; set; } = [];
}

internal sealed class FunctionSeriesResponse
{
    public string FunctionName { get; set; } = "";
    public int Minutes { get; set; }

    /// <summary>Invocations of the function running now.</summary>
    public long ConcurrentExecutions { get; set; }

    public List<MetricsSample> Samples { get; set; } = [];
}

/// <summary>The operator API's JSON (PascalCase, as <c>/lamina/v1/async-events</c>), in a context of its own beside the shared one.</summary>
[JsonSourceGenerationOptions(DefaultIgnoreCondition = JsonIgnoreCondition.Never)]
[JsonSerializable(typeof(FunctionTotalsResponse))]
[JsonSerializable(typeof(FunctionSeriesResponse))]
internal sealed partial class ConsoleJsonContext : JsonSerializerContext;
