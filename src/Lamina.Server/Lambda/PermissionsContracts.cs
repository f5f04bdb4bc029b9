namespace Lamina.Server.Lambda;

/// <summary>AddPermission's body (the qualifier comes in the query).</summary>
internal sealed class AddPermissionRequest
{
    public string? StatementId { get; set; }
    public string? Action { get; set; }
    public string? Principal { get; set; }
    public string? SourceArn { get; set; }
    public string? SourceAccount { get; set; }
    public string? EventSourceToken { get; set; }
    public string? RevisionId { get; set; }
    public string? PrincipalOrgID { get; set; }
    public string? FunctionUrlAuthType { get; set; }
    public bool? InvokedViaFunctionUrl { get; set; }
}

/// <summary>AddPermission's answer: the statement added, as a JSON string.</summary>
internal sealed class AddPermissionResponse
{
    public required string Statement { get; set; }
}

/// <summary>GetPolicy's answer: the whole policy document as a JSON string, and its RevisionId.</summary>
internal sealed class GetPolicyResponse
{
    public required string Policy { get; set; }
    public required string RevisionId { get; set; }
}
