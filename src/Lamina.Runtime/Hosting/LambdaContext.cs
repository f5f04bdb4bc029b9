using System.Text.Json;
using Lamina.Runtime.RuntimeApi;

namespace Lamina.Runtime.Hosting;

/// <summary>The context of one invocation. Client context and identity are parsed only when a handler asks.</summary>
internal sealed class LambdaContext : ILambdaContext
{
    private readonly InvocationRequest _request;
    private readonly FunctionEnvironment _environment;
    private readonly TimeProvider _time;
    private IClientContext? _clientContext;
    private ICognitoIdentity? _identity;

    public LambdaContext(InvocationRequest request, FunctionEnvironment environment, ILambdaLogger logger, TimeProvider time)
    {
        _request = request;
        _environment = environment;
        _time = time;
        Logger = logger;
    }

    public string AwsRequestId => _request.RequestId;

    public IClientContext? ClientContext => _clientContext ??= ClientContextData.Parse(_request.ClientContextJson);

    public string FunctionName => _environment.FunctionName;

    public string FunctionVersion => _environment.FunctionVersion;

    public ICognitoIdentity? Identity => _identity ??= CognitoIdentityData.Parse(_request.CognitoIdentityJson);

    public string InvokedFunctionArn => _request.InvokedFunctionArn;

    public ILambdaLogger Logger { get; }

    public string LogGroupName => _environment.LogGroupName;

    public string LogStreamName => _environment.LogStreamName;

    public int MemoryLimitInMB => _environment.MemoryLimitInMB;

    public TimeSpan RemainingTime
    {
        get
        {
            if (_request.DeadlineMs == long.MaxValue)
            {
                return TimeSpan.MaxValue;
            }
            var left = _request.DeadlineMs - _time.GetUtcNow().ToUnixTimeMilliseconds();
            return TimeSpan.FromMilliseconds(Math.Max(0, left));
        }
    }

    public string TraceId => _request.TraceId;

    private sealed class ClientContextData : IClientContext
    {
        public IDictionary<string, string> Environment { get; } = new Dictionary<string, string>(StringComparer.Ordinal);

        public IClientApplication? Client { get; private set; }

        public IDictionary<string, string> Custom { get; } = new Dictionary<string, string>(StringComparer.Ordinal);

        // {"client":{"installation_id",...},"custom":{...},"env":{...}} as the mobile SDKs send it.
        public static ClientContextData? Parse(string? json)
        {
            if (string.IsNullOrWhiteSpace(json))
            {
                return null;
            }
            try
            {
                using var document = JsonDocument.Parse(json);
                var root = document.RootElement;
                if (root.ValueKind != JsonValueKind.Object)
                {
                    return null;
                }
                var data = new ClientContextData();
                if (root.TryGetProperty("client", out var client) && client.ValueKind == JsonValueKind.Object)
                {
                    data.Client = new ClientApplicationData
                    {
                        AppPackageName = Text(client, "app_package_name"),
                        AppTitle = Text(client, "app_title"),
                        AppVersionCode = Text(client, "app_version_code"),
                        AppVersionName = Text(client, "app_version_name"),
                        InstallationId = Text(client, "installation_id"),
                    };
                }
                CopyStrings(root, "custom", data.Custom);
                CopyStrings(root, "env", data.Environment);
                return data;
            }
            catch (JsonException)
            {
                return null;
            }
        }

        private static void CopyStrings(JsonElement root, string name, IDictionary<string, string> target)
        {
            if (root.TryGetProperty(name, out var element) && element.ValueKind == JsonValueKind.Object)
            {
                foreach (var property in element.EnumerateObject())
                {
                    target[property.Name] = property.Value.ValueKind == JsonValueKind.String ? property.Value.GetString()! : property.Value.GetRawText();
                }
            }
        }
    }

    private sealed class ClientApplicationData : IClientApplication
    {
        public string AppPackageName { get; init; } = "";

        public string AppTitle { get; init; } = "";

        public string AppVersionCode { get; init; } = "";

        public string AppVersionName { get; init; } = "";

        public string InstallationId { get; init; } = "";
    }

    private sealed class CognitoIdentityData : ICognitoIdentity
    {
        public string IdentityId { get; init; } = "";

        public string IdentityPoolId { get; init; } = "";

        public static CognitoIdentityData? Parse(string? json)
        {
            if (string.IsNullOrWhiteSpace(json))
            {
                return null;
            }
            try
            {
                using var document = JsonDocument.Parse(json);
                var root = document.RootElement;
                return root.ValueKind != JsonValueKind.Object ? null : new CognitoIdentityData
                {
                    IdentityId = Text(root, "cognitoIdentityId"),
                    IdentityPoolId = Text(root, "cognitoIdentityPoolId"),
                };
            }
            catch (JsonException)
            {
                return null;
            }
        }
    }

    private static string Text(JsonElement element, string name) =>
        element.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString()! : "";
}
