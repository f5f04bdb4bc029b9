using System.Text.Json;

namespace Lamina.Server.CloudFormation;

/// <summary>
/// The one CodeDeploy operation a Lambda deployment's hook functions call: PutLifecycleEventHookExecutionStatus
/// (awsJson 1.1, <c>CodeDeploy_20141006.</c>), reporting a PreTraffic/PostTraffic hook's verdict to the traffic shift
/// that invoked it (<see cref="StackEngine"/>). Lamina has no CodeDeploy applications or deployments of its own.
/// </summary>
internal static class CodeDeployApi
{
    public const string TargetPrefix = "CodeDeploy_20141006.";

    public static async Task HandleAsync(HttpContext context, string operation, StackEngine stacks)
    {
        if (operation != "PutLifecycleEventHookExecutionStatus")
        {
            await ErrorAsync(context, "UnknownOperationException",
                $"Lamina serves only PutLifecycleEventHookExecutionStatus of CodeDeploy (for DeploymentPreference hooks), not {operation}.");
            return;
        }
        if (await Protocols.JsonProtocolEndpoint.ReadObjectAsync(context) is not { } request)
        {
            await ErrorAsync(context, "SerializationException", "The request body must be a JSON object.");
            return;
        }
        var deploymentId = String(request, "deploymentId");
        var executionId = String(request, "lifecycleEventHookExecutionId");
        var status = String(request, "status");
        if (string.IsNullOrEmpty(deploymentId))
        {
            await ErrorAsync(context, "DeploymentIdRequiredException", "Deployment ID is required.");
            return;
        }
        if (!deploymentId.StartsWith("d-", StringComparison.Ordinal) || deploymentId.Length != 11)
        {
            await ErrorAsync(context, "InvalidDeploymentIdException", $"Deployment ID {deploymentId} is not in a valid format.");
            return;
        }
        var execution = stacks.HookExecutions.Values.FirstOrDefault(e => e.DeploymentId == deploymentId);
        if (execution is null)
        {
            await ErrorAsync(context, "DeploymentDoesNotExistException", $"The deployment {deploymentId} could not be found.");
            return;
        }
        if (execution.ExecutionId != executionId)
        {
            await ErrorAsync(context, "InvalidLifecycleEventHookExecutionIdException",
                $"The lifecycle event hook execution id {executionId} does not belong to deployment {deploymentId}.");
            return;
        }
        if (status is not ("Succeeded" or "Failed"))
        {
            await ErrorAsync(context, "InvalidLifecycleEventHookExecutionStatusException",
                $"Lifecycle event hook execution status {status ?? "(none)"} is not valid: use Succeeded or Failed.");
            return;
        }
        if (Interlocked.CompareExchange(ref execution.Status, status, null) is not null)
        {
            await ErrorAsync(context, "LifecycleEventAlreadyCompletedException", $"The lifecycle event {executionId} has already completed.");
            return;
        }
        context.Response.ContentType = "application/x-amz-json-1.1";
        await using var writer = new Utf8JsonWriter(context.Response.Body);
        writer.WriteStartObject();
        writer.WriteString("lifecycleEventHookExecutionId", executionId);
        writer.WriteEndObject();
    }

    private static string? String(JsonElement request, string name) =>
        request.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;

    private static Task ErrorAsync(HttpContext context, string code, string message) => Protocols.JsonProtocolEndpoint.WriteErrorAsync(context, code, message);
}
