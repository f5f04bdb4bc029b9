using System.Buffers;
using System.Globalization;
using System.IO.Hashing;
using System.Text.Json;
using System.Text.RegularExpressions;
using Lamina.Server.Hosting;
using Item = System.Collections.Generic.Dictionary<string, Lamina.Server.DynamoDb.AttributeValue>;

namespace Lamina.Server.DynamoDb;

/// <summary>
/// The DynamoDB API (botocore's <c>dynamodb</c> model, awsJson1_0, <c>X-Amz-Target: DynamoDB_20120810.&lt;Operation&gt;</c>)
/// on Lamina's own port. Each account has its own tables (the caller's key decides). Responses carry
/// <c>x-amz-crc32</c> as DynamoDB's do (botocore checks it when present); errors are
/// <c>{"__type":"com.amazonaws.dynamodb.v20120810#Code","message":…}</c> with status 400, as the service sends them.
/// </summary>
internal static partial class DynamoDbApi
{
    public const string TargetPrefix = "DynamoDB_20120810.";

    /// <summary>Largest request: 25 items of 400 KB in a BatchWriteItem, 100 in a TransactWriteItems (4 MB of items), JSON-escaped.</summary>
    public const int MaxRequestBytes = 16 * 1024 * 1024;

    [GeneratedRegex(@"^[a-zA-Z0-9_.\-]+\z", RegexOptions.CultureInvariant)]
    private static partial Regex TableNamePattern();

    public static async Task HandleAsync(HttpContext context, string operation, ReadOnlyMemory<byte> body, DynamoStore store, ILogger logger)
    {
        try
        {
            JsonElement request;
            try
            {
                using var document = JsonDocument.Parse(body.Length == 0 ? "{}"u8.ToArray() : body, new JsonDocumentOptions { MaxDepth = 80 });
                if (document.RootElement.ValueKind != JsonValueKind.Object)
                {
                    throw new DynamoException("SerializationException", "Start of list found where not expected");
                }
                request = document.RootElement.Clone();
            }
            catch (JsonException)
            {
                throw new DynamoException("SerializationException", "The request body is not valid JSON.");
            }
            var call = new DynamoCall(context, request, store);
            switch (operation)
            {
                case "CreateTable": await CreateTableAsync(call); break;
                case "DescribeTable": await DescribeTableAsync(call); break;
                case "ListTables": await ListTablesAsync(call); break;
                case "DeleteTable": await DeleteTableAsync(call); break;
                case "UpdateTable": await UpdateTableAsync(call); break;
                case "DescribeTimeToLive": await DescribeTimeToLiveAsync(call); break;
                case "UpdateTimeToLive": await UpdateTimeToLiveAsync(call); break;
                case "TagResource": await TagResourceAsync(call); break;
                case "UntagResource": await UntagResourceAsync(call); break;
                case "ListTagsOfResource": await ListTagsOfResourceAsync(call); break;
                case "DescribeLimits": await DescribeLimitsAsync(call); break;
                case "DescribeEndpoints": await DescribeEndpointsAsync(call); break;
                case "DescribeContinuousBackups": await DescribeContinuousBackupsAsync(call); break;
                case "PutItem": await PutItemAsync(call); break;
                case "GetItem": await GetItemAsync(call); break;
                case "UpdateItem": await UpdateItemAsync(call); break;
                case "DeleteItem": await DeleteItemAsync(call); break;
                case "Query": await QueryAsync(call); break;
                case "Scan": await ScanAsync(call); break;
                case "BatchGetItem": await BatchGetItemAsync(call); break;
                case "BatchWriteItem": await BatchWriteItemAsync(call); break;
                case "TransactWriteItems": await TransactWriteItemsAsync(call); break;
                case "TransactGetItems": await TransactGetItemsAsync(call); break;
                case "ExecuteStatement": await ExecuteStatementAsync(call); break;
                case "ExecuteTransaction": await ExecuteTransactionAsync(call); break;
                case "BatchExecuteStatement": await BatchExecuteStatementAsync(call); break;
                default:
                    throw new DynamoException("UnknownOperationException", $"Lamina does not implement the DynamoDB operation {operation}.");
            }
        }
        catch (DynamoException e)
        {
            await WriteErrorAsync(context, e);
        }
        catch (InvalidOperationException e) when (e.TargetSite?.DeclaringType?.Assembly == typeof(JsonElement).Assembly)
        {
            // A member of the wrong JSON kind (a string where a map belongs, …): what DynamoDB's deserializer refuses.
            await WriteErrorAsync(context, new DynamoException("SerializationException", "Unexpected value type in payload"));
        }
        catch (Exception e) when (Storage.Sql.IsUnavailable(e))
        {
            // A read that found the database down, unreachable or too slow (writes say so themselves, DynamoStore).
            Log.RequestFailed(logger, operation, e);
            await WriteErrorAsync(context, new DynamoException("ServiceUnavailable", $"The server's database is unavailable ({e.Message}); retry the request", 503));
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            Log.RequestFailed(logger, operation, e);
            await WriteErrorAsync(context, new DynamoException("InternalServerError", "Internal server error; the server log has the details.", 500));
        }
    }

    public static async Task WriteErrorAsync(HttpContext context, DynamoException e)
    {
        var buffer = new ArrayBufferWriter<byte>(256);
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteString("__type", e.TypeName);
            w.WriteString("message", e.Message);
            e.WriteExtra?.Invoke(w);
            w.WriteEndObject();
        }
        context.Response.StatusCode = e.Status;
        context.Response.Headers["x-amzn-ErrorType"] = e.Code;
        await WriteBodyAsync(context, buffer.WrittenMemory);
    }

    private static async Task WriteBodyAsync(HttpContext context, ReadOnlyMemory<byte> body)
    {
        var response = context.Response;
        response.ContentType = "application/x-amz-json-1.0";
        response.Headers["x-amz-crc32"] = Crc32.HashToUInt32(body.Span).ToString(CultureInfo.InvariantCulture);
        response.ContentLength = body.Length;
        await response.Body.WriteAsync(body, context.RequestAborted);
    }

    /// <summary>One request: its JSON, the caller's account, and the helpers every operation uses to read it.</summary>
    internal sealed class DynamoCall(HttpContext context, JsonElement request, DynamoStore store)
    {
        public HttpContext Context { get; } = context;
        public JsonElement Request { get; } = request;
        public DynamoStore Store { get; } = store;
        public LaminaOptions Options => Store.Options;
        public string Account { get; } = Protocols.CallerIdentity.AccountOf(context, store.Options);
        public string Region => Options.Region;

        public bool Has(string member) => Request.TryGetProperty(member, out var v) && v.ValueKind != JsonValueKind.Null;

        public JsonElement? Element(string member) => Element(Request, member);

        public static JsonElement? Element(JsonElement parent, string member) =>
            parent.ValueKind == JsonValueKind.Object && parent.TryGetProperty(member, out var v) && v.ValueKind != JsonValueKind.Null ? v : null;

        public string? String(string member) => String(Request, member);

        public static string? String(JsonElement parent, string member) => Element(parent, member) is { } v
            ? v.ValueKind == JsonValueKind.String ? v.GetString() : throw new DynamoException("SerializationException", $"{member} must be a string")
            : null;

        public bool? Bool(string member) => Bool(Request, member);

        public static bool? Bool(JsonElement parent, string member) => Element(parent, member) is { } v
            ? v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.GetBoolean() : throw new DynamoException("SerializationException", $"{member} must be a boolean")
            : null;

        public long? Long(string member) => Long(Request, member);

        public static long? Long(JsonElement parent, string member) => Element(parent, member) is { } v
            ? v.ValueKind == JsonValueKind.Number && v.TryGetInt64(out var n) ? n : throw new DynamoException("SerializationException", $"{member} must be an integer")
            : null;

        /// <summary>The TableName member (a name or a table ARN), checked as DynamoDB checks it.</summary>
        public string TableName(string member = "TableName") => TableNameOf(Request, member);

        public static string TableNameOf(JsonElement parent, string member = "TableName")
        {
            var name = String(parent, member)
                ?? throw DynamoException.Validation($"1 validation error detected: Value null at '{Camel(member)}' failed to satisfy constraint: Member must not be null");
            return CheckTableName(name, member);
        }

        public static string CheckTableName(string name, string member)
        {
            if (name.StartsWith("arn:", StringComparison.Ordinal))
            {
                var at = name.IndexOf(":table/", StringComparison.Ordinal);
                if (at < 0)
                {
                    throw DynamoException.Validation($"Invalid TableArn: {name}");
                }
                name = name[(at + ":table/".Length)..];
            }
            if (name.Length < 3)
            {
                throw DynamoException.Validation($"1 validation error detected: Value '{name}' at '{Camel(member)}' failed to satisfy constraint: Member must have length greater than or equal to 3");
            }
            if (name.Length > 255)
            {
                throw DynamoException.Validation($"1 validation error detected: Value '{name}' at '{Camel(member)}' failed to satisfy constraint: Member must have length less than or equal to 255");
            }
            if (!TableNamePattern().IsMatch(name))
            {
                throw DynamoException.Validation($"1 validation error detected: Value '{name}' at '{Camel(member)}' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+");
            }
            return name;
        }

        public TableInfo Table(string member = "TableName") => Store.Require(Account, TableName(member));

        public TableInfo TableOf(JsonElement parent, string member = "TableName") => Store.Require(Account, TableNameOf(parent, member));

        /// <summary>ExpressionAttributeNames/Values of <paramref name="parent"/>, checked as DynamoDB checks them.</summary>
        public static ExpressionContext Expressions(JsonElement parent)
        {
            Dictionary<string, string>? names = null;
            Dictionary<string, AttributeValue>? values = null;
            if (Element(parent, "ExpressionAttributeNames") is { } n)
            {
                names = new Dictionary<string, string>(StringComparer.Ordinal);
                foreach (var member in n.EnumerateObject())
                {
                    if (member.Name.Length < 2 || member.Name[0] != '#' || !IsWordChars(member.Name.AsSpan(1)))
                    {
                        throw DynamoException.Validation($"ExpressionAttributeNames contains invalid key: Syntax error; key: \"{member.Name}\"");
                    }
                    names[member.Name] = member.Value.ValueKind == JsonValueKind.String ? member.Value.GetString()! : throw new DynamoException("SerializationException", "ExpressionAttributeNames values must be strings");
                    if (names[member.Name].Length == 0)
                    {
                        throw DynamoException.Validation($"ExpressionAttributeNames contains invalid value: Empty attribute name for key {member.Name}");
                    }
                }
                if (names.Count == 0)
                {
                    throw DynamoException.Validation("ExpressionAttributeNames must not be empty");
                }
            }
            if (Element(parent, "ExpressionAttributeValues") is { } v)
            {
                values = new Dictionary<string, AttributeValue>(StringComparer.Ordinal);
                foreach (var member in v.EnumerateObject())
                {
                    if (member.Name.Length < 2 || member.Name[0] != ':' || !IsWordChars(member.Name.AsSpan(1)))
                    {
                        throw DynamoException.Validation($"ExpressionAttributeValues contains invalid key: Syntax error; key: \"{member.Name}\"");
                    }
                    try
                    {
                        values[member.Name] = AttributeValue.Parse(member.Value);
                    }
                    catch (DynamoException e) when (e.Code == "ValidationException")
                    {
                        throw DynamoException.Validation($"ExpressionAttributeValues contains invalid value: {e.Message} for key {member.Name}");
                    }
                }
                if (values.Count == 0)
                {
                    throw DynamoException.Validation("ExpressionAttributeValues must not be empty");
                }
            }
            return new ExpressionContext(names, values);
        }

        public Task RespondAsync(Action<Utf8JsonWriter> write)
        {
            var buffer = new ArrayBufferWriter<byte>(256);
            using (var w = new Utf8JsonWriter(buffer))
            {
                w.WriteStartObject();
                write(w);
                w.WriteEndObject();
            }
            return WriteBodyAsync(Context, buffer.WrittenMemory);
        }
    }

    private static bool IsWordChars(ReadOnlySpan<char> text)
    {
        foreach (var c in text)
        {
            if (!char.IsAsciiLetterOrDigit(c) && c != '_')
            {
                return false;
            }
        }
        return true;
    }

    private static string Camel(string member) => char.ToLowerInvariant(member[0]) + member[1..];

    /// <summary>Legacy (pre-expression) parameters Lamina does not take: said plainly rather than ignored.</summary>
    private static void RefuseLegacy(DynamoCall call, params string[] members)
    {
        foreach (var member in members)
        {
            if (call.Has(member))
            {
                throw DynamoException.Validation($"Lamina does not support the legacy parameter {member}; use the expression parameters (ConditionExpression, UpdateExpression, KeyConditionExpression, FilterExpression, ProjectionExpression) instead.");
            }
        }
    }

    /// <summary>A Key member: exactly the table's (or index's) key attributes, of their types, non-empty.</summary>
    internal static Item ParseKey(TableInfo table, JsonElement? element)
    {
        if (element is not { ValueKind: JsonValueKind.Object } e)
        {
            throw DynamoException.Validation("1 validation error detected: Value null at 'key' failed to satisfy constraint: Member must not be null");
        }
        var key = AttributeValue.ParseMap(e);
        if (key.Count != (table.Range is null ? 1 : 2))
        {
            throw DynamoException.Validation("The provided key element does not match the schema");
        }
        CheckKeyPart(key, table.Hash, hash: true, "The provided key element does not match the schema");
        if (table.Range is { } range)
        {
            CheckKeyPart(key, range, hash: false, "The provided key element does not match the schema");
        }
        return key;
    }

    private static void CheckKeyPart(Item item, KeyAttribute attribute, bool hash, string mismatch)
    {
        if (!item.TryGetValue(attribute.Name, out var value) || value.Kind != attribute.Type)
        {
            throw DynamoException.Validation(mismatch);
        }
        CheckKeyValue(attribute.Name, value, hash);
    }

    private static void CheckKeyValue(string name, AttributeValue value, bool hash)
    {
        if (value.Kind == AttributeKind.S && value.S.Length == 0 || value.Kind == AttributeKind.B && value.B.Length == 0)
        {
            throw DynamoException.Validation($"One or more parameter values are not valid. The AttributeValue for a key attribute cannot contain an empty {(value.Kind == AttributeKind.S ? "string" : "binary")} value. Key: {name}");
        }
        var size = value.Kind == AttributeKind.N ? 0 : value.Size;
        if (hash && size > 2048)
        {
            throw DynamoException.Validation("One or more parameter values were invalid: Size of hashkey has exceeded the maximum size limit of2048 bytes");
        }
        if (!hash && size > 1024)
        {
            throw DynamoException.Validation("One or more parameter values were invalid: Aggregated size of all range keys has exceeded the size limit of 1024 bytes");
        }
    }

    /// <summary>An item to write: its key attributes present and typed, its index keys typed, within 400 KB.</summary>
    internal static void ValidateItem(TableInfo table, Item item)
    {
        foreach (var (attribute, hash) in new[] { (table.Hash, true), (table.Range, false) })
        {
            if (attribute is null)
            {
                continue;
            }
            if (!item.TryGetValue(attribute.Name, out var value))
            {
                throw DynamoException.Validation($"One or more parameter values were invalid: Missing the key {attribute.Name} in the item");
            }
            if (value.Kind != attribute.Type)
            {
                throw DynamoException.Validation($"One or more parameter values were invalid: Type mismatch for key {attribute.Name} expected: {attribute.Type} actual: {value.Kind}");
            }
            CheckKeyValue(attribute.Name, value, hash);
        }
        foreach (var index in table.Indexes)
        {
            foreach (var attribute in new[] { index.Hash, index.Range })
            {
                if (attribute is null || !item.TryGetValue(attribute.Name, out var value) || table.IsKey(attribute.Name))
                {
                    continue;
                }
                if (value.Kind != attribute.Type)
                {
                    throw DynamoException.Validation($"One or more parameter values were invalid: Type mismatch for Index Key {attribute.Name} Expected: {attribute.Type} Actual: {value.Kind} IndexName: {index.Name}");
                }
                if (value.Kind == AttributeKind.S && value.S.Length == 0 || value.Kind == AttributeKind.B && value.B.Length == 0)
                {
                    throw DynamoException.Validation($"One or more parameter values are not valid. A value specified for a secondary index key is not supported. The AttributeValue for a key attribute cannot contain an empty {(value.Kind == AttributeKind.S ? "string" : "binary")} value. IndexName: {index.Name}, IndexKey: {attribute.Name}");
                }
            }
        }
        if (AttributeValue.ItemSize(item) > 400 * 1024)
        {
            throw DynamoException.Validation("Item size has exceeded the maximum allowed size");
        }
    }

    /// <summary>ReturnConsumedCapacity TOTAL/INDEXES: capacity units as DynamoDB counts them (1 KB writes, 4 KB reads).</summary>
    private static void WriteConsumedCapacity(Utf8JsonWriter w, DynamoCall call, string tableName, double units)
    {
        var mode = call.String("ReturnConsumedCapacity");
        if (mode is not ("TOTAL" or "INDEXES"))
        {
            return;
        }
        w.WriteStartObject("ConsumedCapacity");
        w.WriteString("TableName", tableName);
        w.WriteNumber("CapacityUnits", units);
        if (mode == "INDEXES")
        {
            w.WriteStartObject("Table");
            w.WriteNumber("CapacityUnits", units);
            w.WriteEndObject();
        }
        w.WriteEndObject();
    }

    private static double WriteUnits(int size) => Math.Max(1, Math.Ceiling(size / 1024.0));

    private static double ReadUnits(int size, bool consistent) => Math.Max(1, Math.Ceiling(size / 4096.0)) * (consistent ? 1 : 0.5);

    private static void WriteItem(Utf8JsonWriter w, string name, IReadOnlyDictionary<string, AttributeValue> item)
    {
        w.WritePropertyName(name);
        AttributeValue.WriteMap(w, item);
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = Diagnostics.EventIds.DynamoRequestFailed, Level = LogLevel.Error, Message = "DynamoDB {Operation} failed unexpectedly")]
        public static partial void RequestFailed(ILogger logger, string operation, Exception error);
    }
}
