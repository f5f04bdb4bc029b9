namespace Lamina.Server.Diagnostics;

/// <summary>
/// <c>GET /metrics</c> (issue #7): Prometheus' text exposition format 0.0.4. Served on the API's listener, so it
/// follows its access rule (loopback by default) until authentication lands (issue #9).
/// </summary>
internal static class MetricsApi
{
    public static IEndpointRouteBuilder MapMetricsApi(this IEndpointRouteBuilder endpoints)
    {
        // Created now rather than at the first scrape, so other listeners see the node's gauges from the start.
        endpoints.ServiceProvider.GetRequiredService<NodeMetrics>();
        endpoints.MapGet("/metrics", ScrapeAsync);
        return endpoints;
    }

    private static async Task ScrapeAsync(HttpContext context, LaminaMetrics metrics, NodeMetrics node)
    {
        await node.RefreshAsync();
        var text = metrics.Exporter.Scrape();
        context.Response.ContentType = PrometheusExporter.ContentType;
        await context.Response.WriteAsync(text, context.RequestAborted);
    }
}
