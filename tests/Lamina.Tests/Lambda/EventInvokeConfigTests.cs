using System.Text;
using System.Text.Json;
using Lamina.Server.Hosting;
using Lamina.Server.Lambda;
using Lamina.Server.Storage;
using Microsoft.AspNetCore.Http;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;

namespace Lamina.Tests.Lambda;

/// <summary>
/// Asynchronous invocation settings (issue #6): the registry's per-qualifier store (persistence, removal with its
/// version, alias or function) and the five handlers over a DefaultHttpContext (real registry and database).
/// </summary>
public sealed class EventInvokeConfigTests : IDisposable
{
    private const string Arn = "arn:aws:lambda:us-east-1:000000000000:function:";
    private readonly string _dataDirectory = Path.Combine(Path.GetTempPath(), "lamina-eic-" + Guid.NewGuid().ToString("N"));
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2025, 1, 2, 3, 4, 5, 678, TimeSpan.Zero));
    private readonly IOptions<LaminaOptions> _options;
    private readonly ServiceProvider _services = new ServiceCollection().AddLogging().BuildServiceProvider();
    private readonly List<IDisposable> _disposables = [];
    private readonly FunctionRegistry _registry;
    private readonly Lamina.Server.Sqs.QueueStore _queues;

    public EventInvokeConfigTests()
    {
        _options = Options.Create(new LaminaOptions { DataDirectory = _dataDirectory });
        _registry = CreateSut();
        _queues = new Lamina.Server.Sqs.QueueStore(_options, _time);
        _queues.Open();
        _disposables.Add(_queues);
    }

    public void Dispose()
    {
        foreach (var disposable in _disposables)
        {
            disposable.Dispose();
        }
        _services.Dispose();
        SqliteConnection.ClearAllPools();
        if (Directory.Exists(_dataDirectory))
        {
            Directory.Delete(_dataDirectory, recursive: true);
        }
    }

    /// <summary>A registry over the test's database file; a second call reloads what the first wrote.</summary>
    private FunctionRegistry CreateSut()
    {
        var database = new Database(_options);
        database.Initialize();
        var registry = new FunctionRegistry(new LambdaStore(database), _time);
        registry.Load();
        _disposables.Add(registry);
        return registry;
    }

    private static FunctionConfig Draft(string name) => new()
    {
        Name = name,
        Runtime = "python3.12",
        Role = "arn:aws:iam::000000000000:role/r",
        Handler = "app.handler",
        CodeSha256 = Convert.ToBase64String(new byte[32]),
        CodeSize = 10,
        LastModified = default,
        RevisionId = "",
    };

    /// <summary>Function <paramref name="name"/> with version 1 and alias "live" → 1.</summary>
    private async Task WithFunctionAsync(string name = "fn")
    {
        await _registry.CreateAsync(Draft(name), new Dictionary<string, string>(), CancellationToken.None);
        await _registry.PublishAsync(name, null, null, null, CancellationToken.None);
        await _registry.CreateAliasAsync(name, "live", _ => new AliasConfig { Name = "", FunctionVersion = "1", RevisionId = "" }, CancellationToken.None);
    }

    private Task<(FunctionWriteStatus Status, EventInvokeConfig? Config, string? Error)> Set(string qualifier, int? retries, string? onFailure = null) =>
        _registry.SetEventInvokeConfigAsync<string>("fn", qualifier,
            _ => (new EventInvokeConfig("ignored", retries, 120, null, onFailure, default), null), CancellationToken.None);

    [Fact]
    public async Task SetEventInvokeConfigAsync_Persisted_StampedWithQualifierAndTime()
    {
        await WithFunctionAsync();

        var (status, config, _) = await Set("$LATEST", 1, Arn + "other");
        await Set("1", 0);
        await Set("live", null);

        Assert.Equal(FunctionWriteStatus.Succeeded, status);
        Assert.Equal(new EventInvokeConfig("$LATEST", 1, 120, null, Arn + "other", _time.GetUtcNow()), config);
        var reloaded = CreateSut();
        Assert.True(reloaded.TryGetEntry("fn", out var entry));
        Assert.Equal(["$LATEST", "1", "live"], entry.EventInvokeConfigs.Keys);
        Assert.Equal(config, entry.EventInvokeConfigs["$LATEST"]);
        Assert.Equal(new EventInvokeConfig("live", null, 120, null, null, _time.GetUtcNow()), entry.EventInvokeConfigs["live"]);
    }

    [Fact]
    public async Task SetEventInvokeConfigAsync_RefusedOrMissing_NothingWritten_NullRemoves()
    {
        await WithFunctionAsync();
        await Set("$LATEST", 1);

        var refused = await _registry.SetEventInvokeConfigAsync<string>("fn", "$LATEST", _ => (null, "no"), CancellationToken.None);
        var missing = await _registry.SetEventInvokeConfigAsync<string>("nope", "$LATEST", _ => (null, null), CancellationToken.None);

        Assert.Equal((FunctionWriteStatus.Refused, null, "no"), refused);
        Assert.Equal(FunctionWriteStatus.NotFound, missing.Status);
        Assert.True(_registry.TryGetEntry("fn", out var entry));
        Assert.Equal(1, entry.EventInvokeConfigs["$LATEST"].MaximumRetryAttempts);

        var removed = await _registry.SetEventInvokeConfigAsync<string>("fn", "$LATEST", _ => (null, null), CancellationToken.None);

        Assert.Equal((FunctionWriteStatus.Succeeded, null, null), removed);
        Assert.True(CreateSut().TryGetEntry("fn", out entry));
        Assert.Empty(entry.EventInvokeConfigs);
    }

    [Fact]
    public async Task EventInvokeConfigs_RemovedWithTheirVersionAliasAndFunction()
    {
        await WithFunctionAsync();
        await _registry.PublishAsync("fn", null, null, null, CancellationToken.None); // unchanged: still version 1
        await _registry.UpdateAsync("fn", null, c => c with { MemorySize = 256 }, CancellationToken.None);
        await _registry.PublishAsync("fn", null, null, null, CancellationToken.None); // version 2
        await Set("$LATEST", 1);
        await Set("1", 1);
        await Set("2", 1);
        await Set("live", 1);

        await _registry.DeleteAliasAsync("fn", "live", CancellationToken.None);
        await _registry.DeleteVersionAsync("fn", 1, CancellationToken.None);

        Assert.True(_registry.TryGetEntry("fn", out var entry));
        Assert.Equal(["$LATEST", "2"], entry.EventInvokeConfigs.Keys);
        var reloaded = CreateSut();
        Assert.True(reloaded.TryGetEntry("fn", out entry));
        Assert.Equal(["$LATEST", "2"], entry.EventInvokeConfigs.Keys);

        // A function created again under the same name starts without any.
        await reloaded.DeleteAsync("fn", CancellationToken.None);
        await reloaded.CreateAsync(Draft("fn"), new Dictionary<string, string>(), CancellationToken.None);
        Assert.True(CreateSut().TryGetEntry("fn", out entry));
        Assert.Empty(entry.EventInvokeConfigs);
    }

    // ---- the handlers -------------------------------------------------------------------------

    private sealed record Response(int Status, string? ErrorType, string Body)
    {
        public JsonElement Json => JsonDocument.Parse(Body).RootElement;
        public string ErrorMessage => Json.TryGetProperty("message", out var m) ? m.GetString()! : Json.GetProperty("Message").GetString()!;
    }

    private DefaultHttpContext Context(string? body = null, string query = "")
    {
        var context = new DefaultHttpContext { RequestServices = _services };
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
        return new Response(context.Response.StatusCode, context.Response.Headers["x-amzn-ErrorType"].FirstOrDefault(), text);
    }

    private Task<Response> Put(string name, string body, string query = "")
    {
        var context = Context(body, query);
        return Run(context, () => EventInvokeConfigApi.PutAsync(context, name, _registry, _queues, _options, NullLoggerFactory.Instance));
    }

    private Task<Response> Update(string name, string body, string query = "")
    {
        var context = Context(body, query);
        return Run(context, () => EventInvokeConfigApi.UpdateAsync(context, name, _registry, _queues, _options, NullLoggerFactory.Instance));
    }

    private Task<Response> Get(string name, string query = "")
    {
        var context = Context(query: query);
        return Run(context, () => Task.FromResult(EventInvokeConfigApi.Get(context, name, _registry, _options)));
    }

    private Task<Response> Delete(string name, string query = "")
    {
        var context = Context(query: query);
        return Run(context, () => EventInvokeConfigApi.DeleteAsync(context, name, _registry, _options, NullLoggerFactory.Instance));
    }

    private Task<Response> List(string name, string query = "")
    {
        var context = Context(query: query);
        return Run(context, () => Task.FromResult(EventInvokeConfigApi.List(context, name, _registry, _options)));
    }

    [Fact]
    public async Task Put_Unqualified_StoredForLatest_AnswersQualifiedArnAndEpochNumber()
    {
        await WithFunctionAsync();

        var put = await Put("fn", """{"MaximumRetryAttempts":1}""");

        Assert.Equal(200, put.Status);
        // Lambda's shape: a number (not a string), the $LATEST ARN, unset members absent, both destinations present.
        Assert.Equal("""{"LastModified":1735787045.678,"FunctionArn":"arn:aws:lambda:us-east-1:000000000000:function:fn:$LATEST","MaximumRetryAttempts":1,"DestinationConfig":{"OnSuccess":{},"OnFailure":{}}}""",
            put.Body);
        var get = await Get("fn", "?Qualifier=$LATEST");
        Assert.Equal(put.Body, get.Body);
    }

    [Fact]
    public async Task Put_ReplacesEverything_UpdateMerges()
    {
        await WithFunctionAsync();
        await _registry.CreateAsync(Draft("target"), new Dictionary<string, string>(), CancellationToken.None);
        await Put("fn", $$$$"""{"MaximumRetryAttempts":2,"MaximumEventAgeInSeconds":60,"DestinationConfig":{"OnFailure":{"Destination":"{{{{Arn}}}}target"}}}""");

        var replaced = (await Put("fn", """{"MaximumRetryAttempts":0}""")).Json;
        Assert.Equal(0, replaced.GetProperty("MaximumRetryAttempts").GetInt32());
        Assert.False(replaced.TryGetProperty("MaximumEventAgeInSeconds", out _));
        Assert.False(replaced.GetProperty("DestinationConfig").GetProperty("OnFailure").TryGetProperty("Destination", out _));

        await Update("fn", """{"MaximumEventAgeInSeconds":3600}""");
        var merged = (await Update("fn", $$$$"""{"DestinationConfig":{"OnSuccess":{"Destination":"{{{{Arn}}}}target:$LATEST"}}}""")).Json;
        Assert.Equal(0, merged.GetProperty("MaximumRetryAttempts").GetInt32());
        Assert.Equal(3600, merged.GetProperty("MaximumEventAgeInSeconds").GetInt32());
        Assert.Equal(Arn + "target:$LATEST", merged.GetProperty("DestinationConfig").GetProperty("OnSuccess").GetProperty("Destination").GetString());

        // An empty Destination clears that side only; a side without Destination leaves it.
        await Update("fn", $$$$"""{"DestinationConfig":{"OnFailure":{"Destination":"{{{{Arn}}}}target"}}}""");
        var cleared = (await Update("fn", """{"DestinationConfig":{"OnSuccess":{"Destination":""},"OnFailure":{}}}""")).Json;
        Assert.False(cleared.GetProperty("DestinationConfig").GetProperty("OnSuccess").TryGetProperty("Destination", out _));
        Assert.Equal(Arn + "target", cleared.GetProperty("DestinationConfig").GetProperty("OnFailure").GetProperty("Destination").GetString());
    }

    [Fact]
    public async Task VersionAndAlias_EachHaveTheirOwn_QualifierFromQueryOrArn()
    {
        await WithFunctionAsync();

        Assert.Equal(200, (await Put("fn", """{"MaximumRetryAttempts":1}""", "?Qualifier=1")).Status);
        Assert.Equal(200, (await Put(Arn + "fn:live", """{"MaximumRetryAttempts":2}""")).Status);

        Assert.Equal(Arn + "fn:1", (await Get("fn:1")).Json.GetProperty("FunctionArn").GetString());
        Assert.Equal(2, (await Get("fn", "?Qualifier=live")).Json.GetProperty("MaximumRetryAttempts").GetInt32());
        var none = await Get("fn");
        Assert.Equal((404, "ResourceNotFoundException"), (none.Status, none.ErrorType));
        Assert.Equal($"The function {Arn}fn:$LATEST doesn't have an EventInvokeConfig", none.ErrorMessage);
        var conflict = await Put("fn:1", """{"MaximumRetryAttempts":1}""", "?Qualifier=live");
        Assert.Equal((400, "InvalidParameterValueException"), (conflict.Status, conflict.ErrorType));
    }

    [Fact]
    public async Task Errors_AsLambdaAnswersThem()
    {
        await WithFunctionAsync();

        var range = await Put("fn", """{"MaximumRetryAttempts":3,"MaximumEventAgeInSeconds":59}""");
        Assert.Equal((400, "ValidationException"), (range.Status, range.ErrorType));
        Assert.Equal("2 validation errors detected: Value '3' at 'maximumRetryAttempts' failed to satisfy constraint: Member must have value less than or equal to 2; "
            + "Value '59' at 'maximumEventAgeInSeconds' failed to satisfy constraint: Member must have value greater than or equal to 60", range.ErrorMessage);
        var age = await Put("fn", """{"MaximumEventAgeInSeconds":21601}""");
        Assert.Contains("Member must have value less than or equal to 21600", age.ErrorMessage);
        var negative = await Put("fn", """{"MaximumRetryAttempts":-1}""");
        Assert.Contains("Member must have value greater than or equal to 0", negative.ErrorMessage);

        var nothing = await Put("fn", "{}");
        Assert.Equal((400, "InvalidParameterValueException"), (nothing.Status, nothing.ErrorType));
        Assert.Equal("You must specify at least one of error handling or destination setting.", nothing.ErrorMessage);
        Assert.Equal(400, (await Put("fn", "")).Status);

        var missingFunction = await Put("nope", """{"MaximumRetryAttempts":1}""");
        Assert.Equal((404, "ResourceNotFoundException"), (missingFunction.Status, missingFunction.ErrorType));
        var missingAlias = await Put("fn", """{"MaximumRetryAttempts":1}""", "?Qualifier=dead");
        Assert.Equal((404, "ResourceNotFoundException"), (missingAlias.Status, missingAlias.ErrorType));
        Assert.Equal(404, (await Put("fn", """{"MaximumRetryAttempts":1}""", "?Qualifier=7")).Status);

        var updateNone = await Update("fn", """{"MaximumRetryAttempts":1}""");
        Assert.Equal((404, "ResourceNotFoundException"), (updateNone.Status, updateNone.ErrorType));
        Assert.Contains("doesn't have an EventInvokeConfig", updateNone.ErrorMessage);
        var deleteNone = await Delete("fn", "?Qualifier=1");
        Assert.Equal(404, deleteNone.Status);
        Assert.Equal($"The function {Arn}fn:1 doesn't have an EventInvokeConfig", deleteNone.ErrorMessage);
        Assert.Equal(404, (await Delete("nope")).Status);
        Assert.Equal(404, (await List("nope")).Status);
        Assert.Empty(_registry.TryGetEntry("fn", out var entry) ? entry.EventInvokeConfigs : throw new InvalidOperationException());
    }

    [Theory]
    [InlineData("not-an-arn", 400, "ValidationException", "Member must satisfy regular expression pattern")]
    [InlineData("arn:aws:lambda:us-east-1:000000000000:function:fn", 400, "InvalidParameterValueException", "You can't specify the function as a destination for itself.")]
    [InlineData("arn:aws:lambda:us-east-1:000000000000:function:fn:live", 400, "InvalidParameterValueException", "as a destination for itself")]
    [InlineData("arn:aws:lambda:us-east-1:000000000000:function:ghost", 400, "InvalidParameterValueException", "The destination ARN arn:aws:lambda:us-east-1:000000000000:function:ghost is invalid.")]
    [InlineData("arn:aws:lambda:us-east-1:000000000000:function:target:9", 400, "InvalidParameterValueException", "is invalid")]
    [InlineData("arn:aws:lambda:eu-west-1:000000000000:function:target", 400, "InvalidParameterValueException", "is invalid")]
    [InlineData("arn:aws:sqs:us-east-1:000000000000:no-such-queue", 400, "InvalidParameterValueException", "is invalid")]
    [InlineData("arn:aws:sqs:us-east-1:000000000000:queue", 200, null, null)]
    [InlineData("arn:aws:sqs:us-east-1:000000000000:queue.fifo", 400, "InvalidParameterValueException", "is invalid")]
    [InlineData("arn:aws:sns:us-east-1:000000000000:topic", 400, "InvalidParameterValueException", "is invalid")]
    [InlineData("arn:aws:events:us-east-1:000000000000:event-bus/default", 400, "InvalidParameterValueException", "event bus")]
    [InlineData("arn:aws:s3:::bucket", 400, "InvalidParameterValueException", "S3 bucket")]
    [InlineData("arn:aws:iam::000000000000:role/r", 400, "InvalidParameterValueException", "DestinationConfig(onSuccess=null, onFailure=OnFailure(destination=arn:aws:iam::000000000000:role/r)) is invalid.")]
    [InlineData("arn:aws:lambda:us-east-1:000000000000:function:target", 200, null, null)]
    [InlineData("arn:aws:lambda:us-east-1:000000000000:function:target:1", 200, null, null)]
    public async Task Put_OnFailureDestination(string destination, int status, string? errorType, string? message)
    {
        await WithFunctionAsync();
        await WithFunctionAsync("target");
        await _queues.CreateAsync("queue", []);
        await _queues.CreateAsync("queue.fifo", new Dictionary<string, string> { ["FifoQueue"] = "true" });

        var response = await Put("fn", $$$$"""{"DestinationConfig":{"OnFailure":{"Destination":"{{{{destination}}}}"}}}""");

        Assert.Equal((status, errorType), (response.Status, response.ErrorType));
        if (message is not null)
        {
            Assert.Contains(message, response.ErrorMessage);
        }
    }

    [Fact]
    public async Task Put_S3OnSuccess_InvalidAsInLambda()
    {
        await WithFunctionAsync();

        var response = await Put("fn", """{"DestinationConfig":{"OnSuccess":{"Destination":"arn:aws:s3:::bucket"}}}""");

        Assert.Equal((400, "InvalidParameterValueException"), (response.Status, response.ErrorType));
        Assert.Contains("DestinationConfig(onSuccess=OnSuccess(destination=arn:aws:s3:::bucket), onFailure=null) is invalid.", response.ErrorMessage);
    }

    [Fact]
    public async Task List_PagesByQualifier_ThenDeleteEmptiesIt()
    {
        await WithFunctionAsync();
        foreach (var qualifier in new[] { "live", "$LATEST", "1" })
        {
            await Put("fn", """{"MaximumRetryAttempts":0}""", "?Qualifier=" + qualifier);
        }

        var first = (await List("fn", "?MaxItems=2")).Json;
        var arns = first.GetProperty("FunctionEventInvokeConfigs").EnumerateArray().Select(c => c.GetProperty("FunctionArn").GetString()).ToList();
        Assert.Equal([Arn + "fn:$LATEST", Arn + "fn:1"], arns);
        Assert.Equal("live", first.GetProperty("NextMarker").GetString());
        var second = (await List("fn", "?MaxItems=2&Marker=live")).Json;
        Assert.Equal(Arn + "fn:live", second.GetProperty("FunctionEventInvokeConfigs")[0].GetProperty("FunctionArn").GetString());
        Assert.False(second.TryGetProperty("NextMarker", out _));
        Assert.Equal(400, (await List("fn", "?MaxItems=51")).Status);

        foreach (var qualifier in new[] { "live", "$LATEST", "1" })
        {
            Assert.Equal(204, (await Delete("fn", "?Qualifier=" + qualifier)).Status);
        }
        Assert.Equal("""{"FunctionEventInvokeConfigs":[]}""", (await List("fn")).Body);
    }
}
