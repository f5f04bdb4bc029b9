using System.Text.Json.Serialization;
using Lamina.Server.Async;
using Lamina.Server.Diagnostics;
using Lamina.Server.EventBridge;
using Lamina.Server.Lambda;

namespace Lamina.Server.Protocols;

/// <summary>
/// All JSON goes through this one source-generated context. Every serialised type is listed here, on this one
/// declaration: the source generator fails when [JsonSerializable] attributes sit on several partial parts.
/// AWS's JSON omits absent members, so nulls are not written.
/// </summary>
[JsonSourceGenerationOptions(
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    PropertyNamingPolicy = JsonKnownNamingPolicy.Unspecified,
    AllowDuplicateProperties = false)]
[JsonSerializable(typeof(AwsErrorBody))]
[JsonSerializable(typeof(string))]
[JsonSerializable(typeof(Invoke.PlatformErrorBody))]
[JsonSerializable(typeof(Invoke.InvokeEvent))]
[JsonSerializable(typeof(Invoke.ShutdownEvent))]
[JsonSerializable(typeof(RuntimeApi.ExtensionRegistration))]
// Control plane (Lambda/FunctionsContracts.cs).
[JsonSerializable(typeof(CreateFunctionRequest))]
[JsonSerializable(typeof(UpdateFunctionCodeRequest))]
[JsonSerializable(typeof(UpdateFunctionConfigurationRequest))]
[JsonSerializable(typeof(FunctionConfigurationDto))]
[JsonSerializable(typeof(GetFunctionResponse))]
[JsonSerializable(typeof(ListFunctionsResponse))]
// Versions and aliases (Lambda/VersionsContracts.cs).
[JsonSerializable(typeof(PublishVersionRequest))]
[JsonSerializable(typeof(ListVersionsByFunctionResponse))]
[JsonSerializable(typeof(CreateAliasRequest))]
[JsonSerializable(typeof(UpdateAliasRequest))]
[JsonSerializable(typeof(AliasConfigurationDto))]
[JsonSerializable(typeof(ListAliasesResponse))]
// Layers (Lambda/LayersContracts.cs).
[JsonSerializable(typeof(PublishLayerVersionRequest))]
[JsonSerializable(typeof(LayerVersionResponse))]
[JsonSerializable(typeof(ListLayersResponse))]
[JsonSerializable(typeof(ListLayerVersionsResponse))]
// Tags (Lambda/TagsContracts.cs).
[JsonSerializable(typeof(TagResourceRequest))]
[JsonSerializable(typeof(ListTagsResponse))]
// Concurrency (Lambda/ConcurrencyContracts.cs).
[JsonSerializable(typeof(ConcurrencyDto))]
[JsonSerializable(typeof(GetAccountSettingsResponse))]
[JsonSerializable(typeof(PutProvisionedConcurrencyRequest))]
[JsonSerializable(typeof(ProvisionedConcurrencyConfigDto))]
[JsonSerializable(typeof(ListProvisionedConcurrencyConfigsResponse))]
// Asynchronous invocation settings (Lambda/EventInvokeConfigContracts.cs).
[JsonSerializable(typeof(EventInvokeConfigRequest))]
[JsonSerializable(typeof(FunctionEventInvokeConfigDto))]
[JsonSerializable(typeof(ListFunctionEventInvokeConfigsResponse))]
// Operators (Diagnostics/EnvironmentsApi.cs, Diagnostics/ClusterApi.cs, Async/AsyncEventsApi.cs).
[JsonSerializable(typeof(EnvironmentsResponse))]
[JsonSerializable(typeof(ClusterResponse))]
[JsonSerializable(typeof(AsyncEventsResponse))]
[JsonSerializable(typeof(AsyncEventDto))]
[JsonSerializable(typeof(AsyncEventsChanged))]
// Storage.
[JsonSerializable(typeof(Lambda.StoredFunctionConfig))]
[JsonSerializable(typeof(Lambda.StoredLayerVersion))]
[JsonSerializable(typeof(List<Lambda.PolicyStatement>))]
[JsonSerializable(typeof(AddPermissionRequest))]
[JsonSerializable(typeof(AddPermissionResponse))]
[JsonSerializable(typeof(GetPolicyResponse))]
[JsonSerializable(typeof(CorsDto))]
[JsonSerializable(typeof(TargetDto))]
[JsonSerializable(typeof(Dictionary<string, string>))]
[JsonSerializable(typeof(FunctionUrlConfigRequest))]
[JsonSerializable(typeof(FunctionUrlConfigDto))]
[JsonSerializable(typeof(ListFunctionUrlConfigsResponse))]
internal sealed partial class LaminaJsonContext : JsonSerializerContext;
