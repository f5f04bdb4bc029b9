using Lamina.Server.Invoke;
using Lamina.Server.Lambda;
using Lamina.Server.Protocols;
using Lamina.Server.Storage;

namespace Lamina.Server.Diagnostics;

/// <summary>
/// Lamina's own operator view of the cluster as this node sees it (issue #25): the live nodes its last heartbeat
/// listed, its rank among them and the slice of the unreserved concurrency it admits. On a single machine, just itself.
/// </summary>
internal static class ClusterApi
{
    public static IEndpointRouteBuilder MapClusterApi(this IEndpointRouteBuilder endpoints)
    {
        endpoints.MapGet("/lamina/v1/cluster", Get);
        return endpoints;
    }

    private static Microsoft.AspNetCore.Http.HttpResults.JsonHttpResult<ClusterResponse> Get(ClusterNode cluster, ConcurrencyLimiter limiter) =>
        FunctionsApi.Json(new ClusterResponse
        {
            NodeId = cluster.NodeId,
            Nodes = [.. cluster.LiveNodes],
            Rank = cluster.Rank,
            AccountConcurrency = limiter.AccountLimit,
            UnreservedConcurrency = limiter.UnreservedSlice,
        }, LaminaJsonContext.Default.ClusterResponse);
}

internal sealed class ClusterResponse
{
    public string NodeId { get; set; } = "";
    public List<string> Nodes { get; set; } = [];
    public int Rank { get; set; }
    public int AccountConcurrency { get; set; }
    public int UnreservedConcurrency { get; set; }
}
