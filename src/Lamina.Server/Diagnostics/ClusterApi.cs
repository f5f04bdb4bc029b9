using Lamina.Server.Invoke;
using Lamina.Server.Lambda;
using Lamina.Server.Protocols;
using Lamina.Server.Storage;

namespace Lamina.Server.Diagnostics;

/// <summary>
/// Lamina's own operator view of the cluster as this node sees it (issue #25): which node answered, the live nodes its
/// last heartbeat listed and its rank among them, who holds each singleton's lease and until when (PostgreSQL's clock),
/// and the slice of the unreserved concurrency this node admits. On a single machine, a cluster of one.
/// </summary>
internal static class ClusterApi
{
    public static IEndpointRouteBuilder MapClusterApi(this IEndpointRouteBuilder endpoints)
    {
        endpoints.MapGet("/lamina/v1/cluster", GetAsync);
        return endpoints;
    }

    private static async Task<Microsoft.AspNetCore.Http.HttpResults.JsonHttpResult<ClusterResponse>> GetAsync(ClusterNode cluster, ConcurrencyLimiter limiter,
        CancellationToken cancellationToken)
    {
        var response = new ClusterResponse
        {
            NodeId = cluster.NodeId,
            Clustered = cluster.Enabled,
            Nodes = [.. cluster.LiveNodes],
            Rank = cluster.Rank,
            AccountConcurrency = limiter.AccountLimit,
            UnreservedConcurrency = limiter.UnreservedSlice,
        };
        foreach (var (name, holder, expiresAt) in await cluster.LeasesAsync(cancellationToken))
        {
            response.Leases.Add(new ClusterLeaseDto
            {
                Name = name,
                Holder = holder,
                ExpiresAt = expiresAt is { } at ? FunctionConfigurationMapping.FormatTimestamp(at) : null,
                HeldHere = holder == cluster.NodeId && cluster.Holds(name),
            });
        }
        return FunctionsApi.Json(response, LaminaJsonContext.Default.ClusterResponse);
    }
}

internal sealed class ClusterResponse
{
    public string NodeId { get; set; } = "";
    public bool Clustered { get; set; }
    public List<string> Nodes { get; set; } = [];
    public int Rank { get; set; }
    public int AccountConcurrency { get; set; }
    /// <summary>This node's slice of the account's unreserved concurrency.</summary>
    public int UnreservedConcurrency { get; set; }
    public List<ClusterLeaseDto> Leases { get; set; } = [];
}

internal sealed class ClusterLeaseDto
{
    public string Name { get; set; } = "";
    public string Holder { get; set; } = "";
    public string? ExpiresAt { get; set; }
    /// <summary>Whether this node acts on the lease now (it holds it and its last renewal is recent enough).</summary>
    public bool HeldHere { get; set; }
}
