using Lamina.Server.Lambda;
using Lamina.Server.Protocols;
using Lamina.Server.Storage;

namespace Lamina.Server.Diagnostics;

/// <summary>
/// Lamina's own operator view of the cluster (issue #25): which node answered, the live nodes, who holds each
/// singleton's lease and until when (PostgreSQL's clock), this node's rank. On a single machine, a cluster of one.
/// </summary>
internal static class ClusterApi
{
    public static IEndpointRouteBuilder MapClusterApi(this IEndpointRouteBuilder endpoints)
    {
        endpoints.MapGet("/lamina/v1/cluster", GetAsync);
        return endpoints;
    }

    private static async Task<Microsoft.AspNetCore.Http.HttpResults.JsonHttpResult<ClusterResponse>> GetAsync(ClusterNode cluster, CancellationToken cancellationToken)
    {
        var response = new ClusterResponse
        {
            NodeId = cluster.NodeId,
            Clustered = cluster.Enabled,
            Rank = cluster.Rank,
            LiveNodes = [.. cluster.LiveNodes],
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
    public int Rank { get; set; }
    public List<string> LiveNodes { get; set; } = [];
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
