using System.Text;
using System.Text.Json;
using Lamina.Server.Hosting;
using Lamina.Server.Lambda;
using Lamina.Server.Protocols;
using Lamina.Server.Storage;
using Microsoft.AspNetCore.Http;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;

namespace Lamina.Tests.Lambda;

/// <summary>The handlers end to end over a DefaultHttpContext: real registry, database and code store, no sockets.</summary>
public sealed class FunctionsApiTests : IDisposable
{
    private const string Role = "arn:aws:iam::000000000000:role/lambda-role";
    private readonly string _dataDirectory = Path.Combine(Path.GetTempPath(), "lamina-api-" + Guid.NewGuid().ToString("N"));
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2025, 1, 2, 3, 4, 5, 678, TimeSpan.Zero));
    private readonly IOptions<LaminaOptions> _options;
    private readonly FunctionRegistry _registry;
    private readonly LayerRegistry _layers;
    private readonly CodeStore _codeStore;
    private readonly ServiceProvider _services;
    private readonly ILoggerFactory _loggers = NullLoggerFactory.Instance;

    public FunctionsApiTests()
    {
        _options = Options.Create(new LaminaOptions { DataDirectory = _dataDirectory });
        var database = new Database(_options);
        database.Initialize();
        _codeStore = new CodeStore(_options, _time);
        _codeStore.Initialize();
        _registry = new FunctionRegistry(new LambdaStore(database), _time);
        _registry.Load();
        _layers = new LayerRegistry(new LambdaStore(database), _time);
        _layers.Load();
        _services = new ServiceCollection().AddLogging().BuildServiceProvider();
    }

    public void Dispose()
    {
        _registry.Dispose();
        _layers.Dispose();
        _services.Dispose();
        SqliteConnection.ClearAllPools();
        if (Directory.Exists(_dataDirectory))
        {
            Directory.Delete(_dataDirectory, recursive: true);
        }
    }

    private sealed record Response(int Status, string? ErrorType, string Body, string? ContentType)
    {
        public JsonElement Json => JsonDocument.Parse(Body).RootElement;
    }

    private DefaultHttpContext Context(string? body = null, string query = "")
    {
        var context = new DefaultHttpContext { RequestServices = _services };
        context.Request.Scheme = "http";
        context.Request.Host = new HostString("127.0.0.1", 9000);
        context.Request.QueryString = new QueryString(query);
        if (body is not null)
        {
            var bytes = Encoding.UTF8.GetBytes(body);
            context.Request.Body = new MemoryStream(bytes);
            context.Request.ContentLength = bytes.Length;
        }
        context.Response.Body = new MemoryStream();
        return context;
    }

    private static async Task<Response> Run(DefaultHttpContext context, Func<Task<IResult>> handler)
    {
        var result = await handler();
        await result.ExecuteAsync(context);
        context.Response.Body.Position = 0;
        var text = await new StreamReader(context.Response.Body).ReadToEndAsync();
        return new Response(context.Response.StatusCode, context.Response.Headers["x-amzn-ErrorType"].FirstOrDefault(), text, context.Response.ContentType);
    }

    private Task<Response> Create(string body)
    {
        var context = Context(body);
        return Run(context, () => FunctionsApi.CreateFunction(context, _registry, _codeStore, _layers, _options, _loggers));
    }

    private Task<Response> Get(string name, string query = "")
    {
        var context = Context(query: query);
        return Run(context, () => FunctionsApi.GetFunction(context, name, _registry, _codeStore, _options));
    }

    private Task<Response> GetConfiguration(string name, string query = "")
    {
        var context = Context(query: query);
        return Run(context, () => Task.FromResult(FunctionsApi.GetFunctionConfiguration(context, name, _registry, _options)));
    }

    private Task<Response> UpdateConfiguration(string name, string body)
    {
        var context = Context(body);
        return Run(context, () => FunctionsApi.UpdateFunctionConfiguration(context, name, _registry, _codeStore, _layers, _options, _loggers));
    }

    private Task<Response> UpdateCode(string name, string body)
    {
        var context = Context(body);
        return Run(context, () => FunctionsApi.UpdateFunctionCode(context, name, _registry, _codeStore, _options, _loggers));
    }

    private Task<Response> Delete(string name, string query = "")
    {
        var context = Context(query: query);
        return Run(context, () => FunctionsApi.DeleteFunction(context, name, _registry, _options, _loggers));
    }

    private Task<Response> List(string query = "")
    {
        var context = Context(query: query);
        return Run(context, () => Task.FromResult(FunctionsApi.ListFunctions(context, _registry, _options)));
    }

    private static string CreateBody(string name, byte[]? zip = null, string extra = "") =>
        $$"""{"FunctionName":"{{name}}","Runtime":"nodejs20.x","Role":"{{Role}}","Handler":"index.handler","Code":{"ZipFile":"{{Convert.ToBase64String(zip ?? TestZips.Simple())}}"}{{extra}}}""";

    [Fact]
    public async Task CreateFunction_Valid_201WithFunctionConfiguration()
    {
        var zip = TestZips.Simple();

        var response = await Create(CreateBody("hello", zip, ""","Environment":{"Variables":{"GREETING":"hi"}},"Tags":{"team":"a"}"""));

        Assert.Equal(201, response.Status);
        Assert.Equal("application/json", response.ContentType);
        var body = response.Json;
        Assert.Equal("hello", body.GetProperty("FunctionName").GetString());
        Assert.Equal("arn:aws:lambda:us-east-1:000000000000:function:hello", body.GetProperty("FunctionArn").GetString());
        Assert.Equal(Convert.ToBase64String(System.Security.Cryptography.SHA256.HashData(zip)), body.GetProperty("CodeSha256").GetString());
        Assert.Equal(zip.Length, body.GetProperty("CodeSize").GetInt64());
        Assert.Equal("2025-01-02T03:04:05.678+0000", body.GetProperty("LastModified").GetString());
        Assert.Contains("\"LastModified\":\"2025-01-02T03:04:05.678+0000\"", response.Body, StringComparison.Ordinal);
        Assert.Equal("hi", body.GetProperty("Environment").GetProperty("Variables").GetProperty("GREETING").GetString());
        Assert.Equal("Active", body.GetProperty("State").GetString());
        Assert.Equal("$LATEST", body.GetProperty("Version").GetString());
    }

    [Fact]
    public async Task CreateFunction_Twice_409AlreadyExist()
    {
        await Create(CreateBody("dup"));

        var response = await Create(CreateBody("dup"));

        Assert.Equal(409, response.Status);
        Assert.Equal("ResourceConflictException", response.ErrorType);
        Assert.Equal("Function already exist: dup", response.Json.GetProperty("message").GetString());
    }

    [Theory]
    [InlineData("{")]
    [InlineData("not json")]
    [InlineData("null")]
    [InlineData("[1,2]")]
    [InlineData("\"string\"")]
    [InlineData("{\"FunctionName\":{}}")]
    [InlineData("{\"Timeout\":\"3\"}")]
    [InlineData("{\"Timeout\":1e400}")]
    [InlineData("{\"MemorySize\":99999999999999}")]
    [InlineData("{\"Code\":{\"ZipFile\":\"***not base64***\"}}")]
    [InlineData("{\"FunctionName\":\"a\",\"FunctionName\":\"b\"}")]
    [InlineData("{\"FunctionName\":\"\\ud800\"}")]
    public async Task CreateFunction_MalformedJson_400InvalidRequestContent(string body)
    {
        var response = await Create(body);

        Assert.Equal(400, response.Status);
        Assert.Equal("InvalidRequestContentException", response.ErrorType);
        Assert.StartsWith("Could not parse request body into json", response.Json.GetProperty("message").GetString(), StringComparison.Ordinal);
        Assert.DoesNotContain("Lamina.", response.Body, StringComparison.Ordinal);
    }

    [Fact]
    public async Task CreateFunction_DeepNesting_400NotCrash()
    {
        var response = await Create("{\"Tags\":" + new string('[', 10_000) + new string(']', 10_000) + "}");
        Assert.Equal(400, response.Status);
    }

    [Theory]
    [InlineData("{}")]
    [InlineData("{\"FunctionName\":\"x\"}")]
    [InlineData("{\"FunctionName\":\"x\",\"Role\":\"r\",\"Code\":{}}")]
    [InlineData("{\"FunctionName\":\"x y\",\"Role\":\"r\",\"Code\":{}}")]
    [InlineData("{\"FunctionName\":\"x:1\",\"Role\":\"r\",\"Code\":{}}")]
    [InlineData("{\"FunctionName\":\"x\",\"Role\":\"arn:aws:iam::000000000000:role/r\",\"Runtime\":\"nodejs20.x\",\"Handler\":\"a.b\",\"Code\":{\"ZipFile\":\"\"}}")]
    [InlineData("{\"FunctionName\":\"x\",\"Role\":\"arn:aws:iam::000000000000:role/r\",\"Runtime\":\"nodejs20.x\",\"Handler\":\"a.b\",\"Code\":{\"ZipFile\":\"UEsFBg==\"}}")]
    public async Task CreateFunction_InvalidInput_400NeverCreated(string body)
    {
        var response = await Create(body);

        Assert.InRange(response.Status, 400, 499);
        Assert.NotNull(response.ErrorType);
        Assert.Equal(0, _registry.Count);
    }

    [Fact]
    public async Task ReadBodyAsync_OverLimit_413RequestTooLarge()
    {
        var context = Context(new string('x', 2000));
        context.Request.ContentLength = null; // chunked: the length is discovered while reading

        var (_, error) = await FunctionsApi.ReadBodyAsync(context.Request, 1000, "CreateFunction", CancellationToken.None);

        Assert.Equal(413, error!.StatusCode);
        Assert.Equal("RequestTooLargeException", error.Code);
        Assert.Equal("Request must be smaller than 1000 bytes for the CreateFunction operation", error.Message);
    }

    [Fact]
    public async Task CreateFunction_DeclaredLengthOverLimit_413()
    {
        var context = Context("{}");
        context.Request.ContentLength = FunctionsApi.MaxCodeRequestBytes + 1;

        var response = await Run(context, () => FunctionsApi.CreateFunction(context, _registry, _codeStore, _layers, _options, _loggers));

        Assert.Equal(413, response.Status);
        Assert.Equal("Request must be smaller than 70167211 bytes for the CreateFunction operation", response.Json.GetProperty("message").GetString());
    }

    [Fact]
    public async Task GetFunction_CodeLocationServesTheZip()
    {
        var zip = TestZips.Simple();
        await Create(CreateBody("dl", zip, ""","Tags":{"team":"a"}"""));

        var response = await Get("dl");

        Assert.Equal(200, response.Status);
        Assert.Equal("S3", response.Json.GetProperty("Code").GetProperty("RepositoryType").GetString());
        Assert.Equal("a", response.Json.GetProperty("Tags").GetProperty("team").GetString());
        var location = new Uri(response.Json.GetProperty("Code").GetProperty("Location").GetString()!);
        Assert.Equal("127.0.0.1:9000", location.Authority);
        var download = Context(query: location.Query);
        var file = location.Segments[^1];
        var served = FunctionsApi.DownloadCode(download, file, _codeStore);
        Assert.IsType<Microsoft.AspNetCore.Http.HttpResults.PhysicalFileHttpResult>(served);

        var tampered = Context(query: location.Query.Replace("signature=", "signature=0", StringComparison.Ordinal));
        Assert.IsType<AwsError>(FunctionsApi.DownloadCode(tampered, file, _codeStore));
    }

    [Fact]
    public async Task GetFunctionConfiguration_ArnAndQualifiers()
    {
        await Create(CreateBody("q"));

        var byArn = await GetConfiguration("arn:aws:lambda:us-east-1:000000000000:function:q");
        var latest = await GetConfiguration("q", "?Qualifier=%24LATEST");
        var version = await GetConfiguration("q", "?Qualifier=1");
        var inName = await GetConfiguration("q:live");
        var other = await GetConfiguration("arn:aws:lambda:us-east-1:111111111111:function:q");

        Assert.Equal("arn:aws:lambda:us-east-1:000000000000:function:q", byArn.Json.GetProperty("FunctionArn").GetString());
        Assert.Equal("arn:aws:lambda:us-east-1:000000000000:function:q:$LATEST", latest.Json.GetProperty("FunctionArn").GetString());
        Assert.Equal(404, version.Status);
        Assert.Equal("Function not found: arn:aws:lambda:us-east-1:000000000000:function:q:1", version.Json.GetProperty("Message").GetString());
        Assert.Equal(404, inName.Status);
        Assert.Equal(404, other.Status);
    }

    [Fact]
    public async Task UpdateFunctionConfiguration_RevisionChecked_EnvironmentReplaced()
    {
        var created = (await Create(CreateBody("u", extra: ""","Environment":{"Variables":{"OLD_ONE":"1"}}"""))).Json;
        var revision = created.GetProperty("RevisionId").GetString();

        var stale = await UpdateConfiguration("u", """{"RevisionId":"stale","MemorySize":256}""");
        var updated = await UpdateConfiguration("u", "{\"RevisionId\":\"" + revision + "\",\"MemorySize\":256,\"Environment\":{\"Variables\":{\"NEW_ONE\":\"2\"}}}");

        Assert.Equal(412, stale.Status);
        Assert.Equal("PreconditionFailedException", stale.ErrorType);
        Assert.Equal("The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id",
            stale.Json.GetProperty("message").GetString());
        Assert.Equal(200, updated.Status);
        Assert.Equal(256, updated.Json.GetProperty("MemorySize").GetInt32());
        Assert.NotEqual(revision, updated.Json.GetProperty("RevisionId").GetString());
        var variables = updated.Json.GetProperty("Environment").GetProperty("Variables");
        Assert.False(variables.TryGetProperty("OLD_ONE", out _));
        Assert.Equal("2", variables.GetProperty("NEW_ONE").GetString());
    }

    [Fact]
    public async Task UpdateFunctionConfiguration_Invalid_400AndUnchanged()
    {
        await Create(CreateBody("inv"));
        _registry.TryGet("inv", out var before);

        var response = await UpdateConfiguration("inv", """{"Timeout":0,"MemorySize":512}""");

        Assert.Equal(400, response.Status);
        _registry.TryGet("inv", out var after);
        Assert.Same(before, after);
    }

    [Fact]
    public async Task UpdateFunctionCode_NewZip_NewShaAndRevision_DryRunChangesNothing()
    {
        var created = (await Create(CreateBody("code"))).Json;
        var newZip = TestZips.Simple("index.js", "exports.handler = async () => 2;");
        var body = $$"""{"ZipFile":"{{Convert.ToBase64String(newZip)}}"}""";

        var dryRun = await UpdateCode("code", $$"""{"ZipFile":"{{Convert.ToBase64String(newZip)}}","DryRun":true}""");
        Assert.Equal(200, dryRun.Status);
        Assert.Equal(created.GetProperty("RevisionId").GetString(), dryRun.Json.GetProperty("RevisionId").GetString());
        _registry.TryGet("code", out var afterDryRun);
        Assert.Equal(created.GetProperty("CodeSha256").GetString(), afterDryRun!.CodeSha256);

        var updated = await UpdateCode("code", body);
        Assert.Equal(200, updated.Status);
        Assert.Equal(Convert.ToBase64String(System.Security.Cryptography.SHA256.HashData(newZip)), updated.Json.GetProperty("CodeSha256").GetString());
        Assert.NotEqual(created.GetProperty("RevisionId").GetString(), updated.Json.GetProperty("RevisionId").GetString());

        var bad = await UpdateCode("code", """{"ZipFile":"AAAA"}""");
        Assert.Equal(400, bad.Status);
        Assert.Equal("Could not unzip uploaded file. Please check your file, then try to upload again.", bad.Json.GetProperty("message").GetString());
    }

    [Fact]
    public async Task DeleteFunction_204Empty_Then404Everywhere()
    {
        await Create(CreateBody("gone"));

        var latest = await Delete("gone", "?Qualifier=%24LATEST");
        var deleted = await Delete("gone");

        Assert.Equal(400, latest.Status);
        Assert.Equal("$LATEST version cannot be deleted without deleting the function.", latest.Json.GetProperty("message").GetString());
        Assert.Equal(204, deleted.Status);
        Assert.Equal("", deleted.Body);
        Assert.Equal(404, (await Get("gone")).Status);
        Assert.Equal(404, (await GetConfiguration("gone")).Status);
        Assert.Equal(404, (await UpdateConfiguration("gone", "{}")).Status);
        Assert.Equal(404, (await UpdateCode("gone", "{}")).Status);
        Assert.Equal(404, (await Delete("gone")).Status);
    }

    [Fact]
    public async Task ListFunctions_PagesWithMarker_NoNextMarkerOnLastPage()
    {
        foreach (var name in new[] { "c", "a", "b" })
        {
            await Create(CreateBody(name));
        }

        var first = await List("?MaxItems=2");
        var marker = first.Json.GetProperty("NextMarker").GetString();
        var second = await List($"?MaxItems=2&Marker={marker}");
        var all = await List("?FunctionVersion=ALL");

        Assert.Equal(["a", "b"], first.Json.GetProperty("Functions").EnumerateArray().Select(f => f.GetProperty("FunctionName").GetString()));
        Assert.Equal(["c"], second.Json.GetProperty("Functions").EnumerateArray().Select(f => f.GetProperty("FunctionName").GetString()));
        Assert.False(second.Json.TryGetProperty("NextMarker", out _));
        Assert.Equal(3, all.Json.GetProperty("Functions").GetArrayLength());
        Assert.Equal(400, (await List("?MaxItems=0")).Status);
        Assert.Equal(400, (await List("?MaxItems=x")).Status);
    }

    [Fact]
    public async Task ListFunctions_CapsPagesAt50()
    {
        for (var i = 0; i < 55; i++)
        {
            await Create(CreateBody($"f{i:D2}"));
        }

        var page = await List("?MaxItems=1000");

        Assert.Equal(50, page.Json.GetProperty("Functions").GetArrayLength());
        Assert.Equal("f50", page.Json.GetProperty("NextMarker").GetString());
    }
}
