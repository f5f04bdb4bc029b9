using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Lamina.Server.ApiGateway;

/// <summary>
/// The JSON of both API Gateway APIs and of what Lamina stores of them. A context of its own, beside
/// <see cref="Protocols.LaminaJsonContext"/>, because every one of API Gateway's ~200 wire names is lowerCamel: one naming
/// policy here instead of an attribute on each member (a source-generated context has one policy). Nothing here goes
/// through ASP.NET's JSON options: handlers serialise with these type infos explicitly.
/// </summary>
[JsonSourceGenerationOptions(
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    AllowDuplicateProperties = false)]
[JsonSerializable(typeof(HttpApi))]
[JsonSerializable(typeof(HttpRoute))]
[JsonSerializable(typeof(HttpIntegration))]
[JsonSerializable(typeof(HttpAuthorizer))]
[JsonSerializable(typeof(HttpStage))]
[JsonSerializable(typeof(HttpDeployment))]
[JsonSerializable(typeof(HttpTags))]
[JsonSerializable(typeof(HttpImportRequest))]
[JsonSerializable(typeof(HttpPage<HttpApi>))]
[JsonSerializable(typeof(HttpPage<HttpRoute>))]
[JsonSerializable(typeof(HttpPage<HttpIntegration>))]
[JsonSerializable(typeof(HttpPage<HttpAuthorizer>))]
[JsonSerializable(typeof(HttpPage<HttpStage>))]
[JsonSerializable(typeof(HttpPage<HttpDeployment>))]
[JsonSerializable(typeof(HttpApiSnapshot))]
[JsonSerializable(typeof(StoredHttpApi))]
[JsonSerializable(typeof(RestApi))]
[JsonSerializable(typeof(RestResource))]
[JsonSerializable(typeof(RestMethod))]
[JsonSerializable(typeof(RestIntegration))]
[JsonSerializable(typeof(MethodResponse))]
[JsonSerializable(typeof(IntegrationResponse))]
[JsonSerializable(typeof(RestAuthorizer))]
[JsonSerializable(typeof(RestDeployment))]
[JsonSerializable(typeof(RestStage))]
[JsonSerializable(typeof(ApiKey))]
[JsonSerializable(typeof(UsagePlan))]
[JsonSerializable(typeof(UsagePlanKey))]
[JsonSerializable(typeof(PatchRequest))]
[JsonSerializable(typeof(UsageReport))]
[JsonSerializable(typeof(RestPage<RestApi>))]
[JsonSerializable(typeof(RestPage<RestResource>))]
[JsonSerializable(typeof(RestPage<RestAuthorizer>))]
[JsonSerializable(typeof(RestPage<RestDeployment>))]
[JsonSerializable(typeof(RestPage<RestStage>))]
[JsonSerializable(typeof(RestPage<ApiKey>))]
[JsonSerializable(typeof(RestPage<UsagePlan>))]
[JsonSerializable(typeof(RestPage<UsagePlanKey>))]
[JsonSerializable(typeof(RestApiSnapshot))]
[JsonSerializable(typeof(StoredRestApi))]
[JsonSerializable(typeof(Dictionary<string, string>))]
[JsonSerializable(typeof(GatewayMessage))]
internal sealed partial class ApiGatewayJsonContext : JsonSerializerContext;

/// <summary>The REST API's timestamps: epoch seconds (a JSON number), as rest-json's default <c>unixTimestamp</c> format.</summary>
internal sealed class EpochSecondsConverter : JsonConverter<DateTimeOffset>
{
    public override DateTimeOffset Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) => reader.TokenType switch
    {
        JsonTokenType.Number => DateTimeOffset.FromUnixTimeMilliseconds((long)(reader.GetDouble() * 1000)),
        JsonTokenType.String => DateTimeOffset.Parse(reader.GetString()!, CultureInfo.InvariantCulture),
        _ => throw new JsonException("A timestamp must be a number of seconds or an ISO 8601 string."),
    };

    public override void Write(Utf8JsonWriter writer, DateTimeOffset value, JsonSerializerOptions options) =>
        writer.WriteNumberValue(value.ToUnixTimeSeconds());
}
