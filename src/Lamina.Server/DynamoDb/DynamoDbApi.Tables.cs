using System.Text.Json;

namespace Lamina.Server.DynamoDb;

internal static partial class DynamoDbApi
{
    private static readonly string[] ViewTypes = ["KEYS_ONLY", "NEW_IMAGE", "OLD_IMAGE", "NEW_AND_OLD_IMAGES"];

    private static async Task CreateTableAsync(DynamoCall call)
    {
        var name = call.TableName();
        var definitions = ParseAttributeDefinitions(call.Element("AttributeDefinitions"));
        var (hash, range) = ParseKeySchema(call.Element("KeySchema"), definitions, "KeySchema");
        var billing = call.String("BillingMode") ?? "PROVISIONED";
        var (read, write) = ParseThroughput(call.Element("ProvisionedThroughput"), billing, "");
        var indexes = new List<IndexInfo>();
        if (call.Element("LocalSecondaryIndexes") is { } lsis)
        {
            foreach (var lsi in lsis.EnumerateArray())
            {
                var index = ParseIndex(lsi, definitions, global: false, billing);
                if (index.Hash.Name != hash.Name || index.Range is null)
                {
                    throw DynamoException.Validation($"One or more parameter values were invalid: Index KeySchema does not have a range key for index: {index.Name}");
                }
                if (range is null)
                {
                    throw DynamoException.Validation("One or more parameter values were invalid: Table KeySchema does not have a range key, which is required when specifying a LocalSecondaryIndex");
                }
                indexes.Add(index);
            }
        }
        if (call.Element("GlobalSecondaryIndexes") is { } gsis)
        {
            foreach (var gsi in gsis.EnumerateArray())
            {
                indexes.Add(ParseIndex(gsi, definitions, global: true, billing));
            }
        }
        if (indexes.GroupBy(static i => i.Name).FirstOrDefault(static g => g.Count() > 1) is { } duplicate)
        {
            throw DynamoException.Validation($"One or more parameter values were invalid: Duplicate index name: {duplicate.Key}");
        }
        var used = new HashSet<string>(StringComparer.Ordinal) { hash.Name };
        if (range is not null)
        {
            used.Add(range.Name);
        }
        foreach (var index in indexes)
        {
            used.Add(index.Hash.Name);
            if (index.Range is not null)
            {
                used.Add(index.Range.Name);
            }
        }
        if (definitions.Count != used.Count || definitions.Any(d => !used.Contains(d.Name)))
        {
            throw DynamoException.Validation(indexes.Count == 0
                ? "One or more parameter values were invalid: Number of attributes in KeySchema does not exactly match number of attributes defined in AttributeDefinitions"
                : $"One or more parameter values were invalid: Some AttributeDefinitions are not used. AttributeDefinitions: [{string.Join(", ", definitions.Select(static d => d.Name))}], keys used: [{string.Join(", ", used)}]");
        }
        var stream = ParseStreamSpecification(call.Element("StreamSpecification"), null);
        var tags = ParseTags(call.Element("Tags"));
        var draft = new TableInfo
        {
            Id = 0,
            Account = call.Account,
            Name = name,
            TableId = Guid.NewGuid().ToString(),
            Hash = hash,
            Range = range,
            AttributeDefinitions = definitions,
            Indexes = indexes,
            BillingMode = billing,
            ReadCapacity = read,
            WriteCapacity = write,
            Stream = stream,
            Tags = tags,
            DeletionProtection = call.Bool("DeletionProtectionEnabled") ?? false,
            TableClass = call.String("TableClass") ?? "STANDARD",
            CreatedMs = call.Store.NowMs,
            Status = "CREATING",
        };
        var table = await call.Store.CreateTableAsync(draft);
        await call.RespondAsync(w => WriteTable(w, "TableDescription", table with { Status = "CREATING" }, call, stats: false));
    }

    private static async Task DescribeTableAsync(DynamoCall call)
    {
        var table = call.Table();
        await call.RespondAsync(w => WriteTable(w, "Table", table, call, stats: true));
    }

    private static async Task ListTablesAsync(DynamoCall call)
    {
        var limit = call.Long("Limit") ?? 100;
        if (limit is < 1 or > 100)
        {
            throw DynamoException.Validation($"1 validation error detected: Value '{limit}' at 'limit' failed to satisfy constraint: Member must have value {(limit < 1 ? "greater than or equal to 1" : "less than or equal to 100")}");
        }
        var start = call.String("ExclusiveStartTableName");
        var names = call.Store.Tables(call.Account).Select(static t => t.Name).Order(StringComparer.Ordinal)
            .Where(n => start is null || string.CompareOrdinal(n, start) > 0).ToList();
        var page = names.Take((int)limit).ToList();
        await call.RespondAsync(w =>
        {
            w.WriteStartArray("TableNames");
            foreach (var name in page)
            {
                w.WriteStringValue(name);
            }
            w.WriteEndArray();
            if (names.Count > page.Count)
            {
                w.WriteString("LastEvaluatedTableName", page[^1]);
            }
        });
    }

    private static async Task DeleteTableAsync(DynamoCall call)
    {
        var table = call.Table();
        if (table.DeletionProtection)
        {
            throw DynamoException.Validation($"Resource cannot be deleted as it is currently protected against deletion. Disable deletion protection first.");
        }
        var (count, bytes) = call.Store.Stats(table);
        await call.Store.DeleteTableAsync(table);
        await call.RespondAsync(w => WriteTable(w, "TableDescription", table with { Status = "DELETING" }, call, stats: false, counts: (count, bytes)));
    }

    private static async Task UpdateTableAsync(DynamoCall call)
    {
        var table = call.Table();
        var newDefinitions = call.Element("AttributeDefinitions") is { } defs ? ParseAttributeDefinitions(defs) : [];
        var billing = call.String("BillingMode");
        if (billing is not (null or "PROVISIONED" or "PAY_PER_REQUEST"))
        {
            throw DynamoException.Validation($"1 validation error detected: Value '{billing}' at 'billingMode' failed to satisfy constraint: Member must satisfy enum value set: [PROVISIONED, PAY_PER_REQUEST]");
        }
        var effectiveBilling = billing ?? table.BillingMode;
        (long Read, long Write)? throughput = call.Element("ProvisionedThroughput") is { } pt ? ParseThroughput(pt, effectiveBilling, "") : null;
        if (billing == "PROVISIONED" && table.BillingMode == "PAY_PER_REQUEST" && throughput is null)
        {
            throw DynamoException.Validation("One or more parameter values were invalid: ProvisionedThroughput must be specified when BillingMode is PROVISIONED");
        }
        StreamInfo? stream = table.Stream;
        var streamChange = false;
        if (call.Element("StreamSpecification") is { } spec)
        {
            var enabled = DynamoCall.Bool(spec, "StreamEnabled") ?? false;
            if (enabled && table.Stream is not null)
            {
                throw DynamoException.Validation($"Table already has an enabled stream: {table.StreamArn(call.Region)}");
            }
            if (!enabled && table.Stream is null)
            {
                throw DynamoException.Validation("Table already has no stream enabled");
            }
            stream = ParseStreamSpecification(spec, null);
            streamChange = true;
        }
        var indexUpdates = new List<(string Action, JsonElement Body)>();
        if (call.Element("GlobalSecondaryIndexUpdates") is { } updates)
        {
            foreach (var update in updates.EnumerateArray())
            {
                foreach (var member in update.EnumerateObject())
                {
                    indexUpdates.Add((member.Name, member.Value));
                }
            }
        }
        var deletionProtection = call.Bool("DeletionProtectionEnabled");
        var tableClass = call.String("TableClass");
        if (billing is null && throughput is null && !streamChange && indexUpdates.Count == 0 && deletionProtection is null && tableClass is null)
        {
            throw DynamoException.Validation("At least one of ProvisionedThroughput, BillingMode, UpdateStreamEnabled, GlobalSecondaryIndexUpdates or SSESpecification or ReplicaUpdates is required");
        }
        var updated = await call.Store.ReplaceTableAsync(table, current =>
        {
            var definitions = current.AttributeDefinitions.ToList();
            foreach (var definition in newDefinitions)
            {
                if (definitions.FirstOrDefault(d => d.Name == definition.Name) is { } existing && existing.Type != definition.Type)
                {
                    throw DynamoException.Validation($"One or more parameter values were invalid: Attribute {definition.Name} is already defined as {existing.Type}");
                }
                if (!definitions.Any(d => d.Name == definition.Name))
                {
                    definitions.Add(definition);
                }
            }
            var indexes = current.Indexes.ToList();
            foreach (var (action, body) in indexUpdates)
            {
                var indexName = DynamoCall.String(body, "IndexName") ?? throw DynamoException.Validation("1 validation error detected: Value null at 'indexName' failed to satisfy constraint: Member must not be null");
                switch (action)
                {
                    case "Create":
                        if (indexes.Any(i => i.Name == indexName))
                        {
                            throw DynamoException.Validation($"One or more parameter values were invalid: Index with name {indexName} already exists");
                        }
                        indexes.Add(ParseIndex(body, definitions, global: true, effectiveBilling) with { Status = "CREATING" });
                        break;
                    case "Delete":
                        if (indexes.RemoveAll(i => i.Name == indexName && i.Global) == 0)
                        {
                            throw DynamoException.NotFound($"Requested resource not found: Index: {indexName} not found");
                        }
                        break;
                    case "Update":
                        var at = indexes.FindIndex(i => i.Name == indexName && i.Global);
                        if (at < 0)
                        {
                            throw DynamoException.NotFound($"Requested resource not found: Index: {indexName} not found");
                        }
                        var (r, wr) = ParseThroughput(DynamoCall.Element(body, "ProvisionedThroughput"), effectiveBilling, "");
                        indexes[at] = indexes[at] with { ReadCapacity = r, WriteCapacity = wr };
                        break;
                    default:
                        throw new DynamoException("SerializationException", $"Unknown GlobalSecondaryIndexUpdate action {action}");
                }
            }
            var usedNames = new HashSet<string>(indexes.SelectMany(static i => new[] { i.Hash.Name, i.Range?.Name }).OfType<string>().Append(current.Hash.Name), StringComparer.Ordinal);
            if (current.Range is not null)
            {
                usedNames.Add(current.Range.Name);
            }
            return current with
            {
                AttributeDefinitions = [.. definitions.Where(d => usedNames.Contains(d.Name))],
                Indexes = indexes,
                BillingMode = effectiveBilling,
                ReadCapacity = effectiveBilling == "PAY_PER_REQUEST" ? 0 : throughput?.Read ?? current.ReadCapacity,
                WriteCapacity = effectiveBilling == "PAY_PER_REQUEST" ? 0 : throughput?.Write ?? current.WriteCapacity,
                Stream = streamChange ? stream : current.Stream,
                DeletionProtection = deletionProtection ?? current.DeletionProtection,
                TableClass = tableClass ?? current.TableClass,
            };
        });
        await call.RespondAsync(w => WriteTable(w, "TableDescription", updated with { Status = "UPDATING" }, call, stats: true));
    }

    private static async Task DescribeTimeToLiveAsync(DynamoCall call)
    {
        var table = call.Table();
        await call.RespondAsync(w =>
        {
            w.WriteStartObject("TimeToLiveDescription");
            w.WriteString("TimeToLiveStatus", table.TtlAttribute is null ? "DISABLED" : "ENABLED");
            if (table.TtlAttribute is { } attribute)
            {
                w.WriteString("AttributeName", attribute);
            }
            w.WriteEndObject();
        });
    }

    private static async Task UpdateTimeToLiveAsync(DynamoCall call)
    {
        var table = call.Table();
        var spec = call.Element("TimeToLiveSpecification")
            ?? throw DynamoException.Validation("1 validation error detected: Value null at 'timeToLiveSpecification' failed to satisfy constraint: Member must not be null");
        var enabled = DynamoCall.Bool(spec, "Enabled")
            ?? throw DynamoException.Validation("1 validation error detected: Value null at 'timeToLiveSpecification.enabled' failed to satisfy constraint: Member must not be null");
        var attribute = DynamoCall.String(spec, "AttributeName");
        if (string.IsNullOrEmpty(attribute))
        {
            throw DynamoException.Validation("1 validation error detected: Value null at 'timeToLiveSpecification.attributeName' failed to satisfy constraint: Member must not be null");
        }
        if (enabled && table.TtlAttribute is not null)
        {
            throw DynamoException.Validation("TimeToLive is already enabled");
        }
        if (!enabled && table.TtlAttribute is null)
        {
            throw DynamoException.Validation("TimeToLive is already disabled");
        }
        if (!enabled && table.TtlAttribute != attribute)
        {
            throw DynamoException.Validation($"TimeToLive attribute name does not match the enabled one: {table.TtlAttribute}");
        }
        await call.Store.ReplaceTableAsync(table, current => current with { TtlAttribute = enabled ? attribute : null });
        await call.RespondAsync(w =>
        {
            w.WriteStartObject("TimeToLiveSpecification");
            w.WriteBoolean("Enabled", enabled);
            w.WriteString("AttributeName", attribute);
            w.WriteEndObject();
        });
    }

    private static TableInfo TableByArn(DynamoCall call)
    {
        var arn = call.String("ResourceArn")
            ?? throw DynamoException.Validation("1 validation error detected: Value null at 'resourceArn' failed to satisfy constraint: Member must not be null");
        var prefix = $"arn:aws:dynamodb:{call.Region}:{call.Account}:table/";
        if (!arn.StartsWith(prefix, StringComparison.Ordinal))
        {
            throw DynamoException.Validation($"Invalid TableArn: Invalid ResourceArn provided as input {arn}");
        }
        var name = arn[prefix.Length..];
        var slash = name.IndexOf('/', StringComparison.Ordinal);
        return call.Store.Find(call.Account, slash < 0 ? name : name[..slash])
            ?? throw DynamoException.NotFound($"Requested resource not found: ResourceArn: {arn} not found");
    }

    private static async Task TagResourceAsync(DynamoCall call)
    {
        var table = TableByArn(call);
        var tags = ParseTags(call.Element("Tags"));
        await call.Store.ReplaceTableAsync(table, current =>
        {
            var merged = new Dictionary<string, string>(current.Tags, StringComparer.Ordinal);
            foreach (var (key, value) in tags)
            {
                merged[key] = value;
            }
            if (merged.Count > 50)
            {
                throw new DynamoException("LimitExceededException", "The number of tags on the resource would exceed the limit of 50");
            }
            return current with { Tags = merged };
        });
        await call.RespondAsync(static _ => { });
    }

    private static async Task UntagResourceAsync(DynamoCall call)
    {
        var table = TableByArn(call);
        var keys = call.Element("TagKeys")?.EnumerateArray().Select(static k => k.GetString() ?? "").ToList()
            ?? throw DynamoException.Validation("1 validation error detected: Value null at 'tagKeys' failed to satisfy constraint: Member must not be null");
        await call.Store.ReplaceTableAsync(table, current =>
            current with { Tags = current.Tags.Where(t => !keys.Contains(t.Key)).ToDictionary(static t => t.Key, static t => t.Value, StringComparer.Ordinal) });
        await call.RespondAsync(static _ => { });
    }

    private static async Task ListTagsOfResourceAsync(DynamoCall call)
    {
        var table = TableByArn(call);
        await call.RespondAsync(w =>
        {
            w.WriteStartArray("Tags");
            foreach (var (key, value) in table.Tags.OrderBy(static t => t.Key, StringComparer.Ordinal))
            {
                w.WriteStartObject();
                w.WriteString("Key", key);
                w.WriteString("Value", value);
                w.WriteEndObject();
            }
            w.WriteEndArray();
        });
    }

    private static Task DescribeLimitsAsync(DynamoCall call) => call.RespondAsync(static w =>
    {
        w.WriteNumber("AccountMaxReadCapacityUnits", 80000);
        w.WriteNumber("AccountMaxWriteCapacityUnits", 80000);
        w.WriteNumber("TableMaxReadCapacityUnits", 40000);
        w.WriteNumber("TableMaxWriteCapacityUnits", 40000);
    });

    private static Task DescribeEndpointsAsync(DynamoCall call) => call.RespondAsync(w =>
    {
        w.WriteStartArray("Endpoints");
        w.WriteStartObject();
        w.WriteString("Address", call.Context.Request.Host.Value);
        w.WriteNumber("CachePeriodInMinutes", 1440);
        w.WriteEndObject();
        w.WriteEndArray();
    });

    private static Task DescribeContinuousBackupsAsync(DynamoCall call)
    {
        call.Table();
        return call.RespondAsync(static w =>
        {
            w.WriteStartObject("ContinuousBackupsDescription");
            w.WriteString("ContinuousBackupsStatus", "DISABLED");
            w.WriteStartObject("PointInTimeRecoveryDescription");
            w.WriteString("PointInTimeRecoveryStatus", "DISABLED");
            w.WriteEndObject();
            w.WriteEndObject();
        });
    }

    // ---- parsing the definitions ----

    private static List<KeyAttribute> ParseAttributeDefinitions(JsonElement? element)
    {
        if (element is not { ValueKind: JsonValueKind.Array } array)
        {
            throw DynamoException.Validation("1 validation error detected: Value null at 'attributeDefinitions' failed to satisfy constraint: Member must not be null");
        }
        var definitions = new List<KeyAttribute>();
        foreach (var definition in array.EnumerateArray())
        {
            var name = DynamoCall.String(definition, "AttributeName")
                ?? throw DynamoException.Validation("1 validation error detected: Value null at 'attributeDefinitions.1.member.attributeName' failed to satisfy constraint: Member must not be null");
            var type = DynamoCall.String(definition, "AttributeType");
            if (type is not ("S" or "N" or "B"))
            {
                throw DynamoException.Validation($"1 validation error detected: Value '{type}' at 'attributeDefinitions.{definitions.Count + 1}.member.attributeType' failed to satisfy constraint: Member must satisfy enum value set: [B, N, S]");
            }
            if (definitions.Any(d => d.Name == name))
            {
                throw DynamoException.Validation($"Cannot have two attributes with the same name. Attribute name: {name}");
            }
            definitions.Add(new KeyAttribute(name, Enum.Parse<AttributeKind>(type)));
        }
        return definitions;
    }

    private static (KeyAttribute Hash, KeyAttribute? Range) ParseKeySchema(JsonElement? element, List<KeyAttribute> definitions, string member)
    {
        if (element is not { ValueKind: JsonValueKind.Array } array || array.GetArrayLength() == 0)
        {
            throw DynamoException.Validation($"1 validation error detected: Value null at '{Camel(member)}' failed to satisfy constraint: Member must not be null");
        }
        if (array.GetArrayLength() > 2)
        {
            throw DynamoException.Validation($"1 validation error detected: Value '{array.GetRawText()}' at '{Camel(member)}' failed to satisfy constraint: Member must have length less than or equal to 2");
        }
        var elements = array.EnumerateArray().Select(static e => (Name: DynamoCall.String(e, "AttributeName") ?? "", Type: DynamoCall.String(e, "KeyType") ?? "")).ToList();
        if (elements[0].Type != "HASH")
        {
            throw DynamoException.Validation("Invalid KeySchema: The first KeySchemaElement is not a HASH key type");
        }
        if (elements.Count == 2 && elements[1].Type != "RANGE")
        {
            throw DynamoException.Validation("Invalid KeySchema: The second KeySchemaElement is not a RANGE key type");
        }
        if (elements.Count == 2 && elements[0].Name == elements[1].Name)
        {
            throw DynamoException.Validation("Both the Hash Key and the Range Key element in the KeySchema have the same name");
        }
        KeyAttribute Find(string name) => definitions.FirstOrDefault(d => d.Name == name)
            ?? throw DynamoException.Validation($"One or more parameter values were invalid: Some index key attributes are not defined in AttributeDefinitions. Keys: [{string.Join(", ", elements.Select(static e => e.Name))}], AttributeDefinitions: [{string.Join(", ", definitions.Select(static d => d.Name))}]");
        return (Find(elements[0].Name), elements.Count == 2 ? Find(elements[1].Name) : null);
    }

    private static (long Read, long Write) ParseThroughput(JsonElement? element, string billing, string context)
    {
        if (billing is not ("PROVISIONED" or "PAY_PER_REQUEST"))
        {
            throw DynamoException.Validation($"1 validation error detected: Value '{billing}' at 'billingMode' failed to satisfy constraint: Member must satisfy enum value set: [PROVISIONED, PAY_PER_REQUEST]");
        }
        if (billing == "PAY_PER_REQUEST")
        {
            if (element is not null)
            {
                throw DynamoException.Validation($"One or more parameter values were invalid: Neither ReadCapacityUnits nor WriteCapacityUnits can be specified when BillingMode is PAY_PER_REQUEST{context}");
            }
            return (0, 0);
        }
        if (element is not { } e)
        {
            throw DynamoException.Validation($"One or more parameter values were invalid: ReadCapacityUnits and WriteCapacityUnits must both be specified when BillingMode is PROVISIONED{context}");
        }
        var read = DynamoCall.Long(e, "ReadCapacityUnits") ?? 0;
        var write = DynamoCall.Long(e, "WriteCapacityUnits") ?? 0;
        if (read < 1 || write < 1)
        {
            throw DynamoException.Validation($"1 validation error detected: Value '{Math.Min(read, write)}' at 'provisionedThroughput.{(read < 1 ? "readCapacityUnits" : "writeCapacityUnits")}' failed to satisfy constraint: Member must have value greater than or equal to 1");
        }
        return (read, write);
    }

    private static IndexInfo ParseIndex(JsonElement element, List<KeyAttribute> definitions, bool global, string billing)
    {
        var name = DynamoCall.String(element, "IndexName")
            ?? throw DynamoException.Validation("1 validation error detected: Value null at 'indexName' failed to satisfy constraint: Member must not be null");
        if (name.Length < 3 || name.Length > 255 || !TableNamePattern().IsMatch(name))
        {
            throw DynamoException.Validation($"1 validation error detected: Value '{name}' at 'indexName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+");
        }
        var (hash, range) = ParseKeySchema(DynamoCall.Element(element, "KeySchema"), definitions, "KeySchema");
        var projection = DynamoCall.Element(element, "Projection")
            ?? throw DynamoException.Validation("1 validation error detected: Value null at 'projection' failed to satisfy constraint: Member must not be null");
        var type = DynamoCall.String(projection, "ProjectionType") ?? "ALL";
        if (type is not ("ALL" or "KEYS_ONLY" or "INCLUDE"))
        {
            throw DynamoException.Validation($"1 validation error detected: Value '{type}' at 'projection.projectionType' failed to satisfy constraint: Member must satisfy enum value set: [ALL, INCLUDE, KEYS_ONLY]");
        }
        var nonKey = DynamoCall.Element(projection, "NonKeyAttributes")?.EnumerateArray().Select(static n => n.GetString() ?? "").ToList() ?? [];
        if (type == "INCLUDE" && nonKey.Count == 0)
        {
            throw DynamoException.Validation($"One or more parameter values were invalid: ProjectionType is INCLUDE, but NonKeyAttributes is not specified");
        }
        if (type != "INCLUDE" && nonKey.Count > 0)
        {
            throw DynamoException.Validation($"One or more parameter values were invalid: ProjectionType is {type}, but NonKeyAttributes is specified");
        }
        var (read, write) = global ? ParseThroughput(DynamoCall.Element(element, "ProvisionedThroughput"), billing, $" for index {name}") : (0L, 0L);
        return new IndexInfo
        {
            Name = name,
            Global = global,
            Hash = hash,
            Range = range,
            ProjectionType = type,
            NonKeyAttributes = nonKey,
            ReadCapacity = read,
            WriteCapacity = write,
        };
    }

    private static StreamInfo? ParseStreamSpecification(JsonElement? element, StreamInfo? current)
    {
        if (element is not { } spec || !(DynamoCall.Bool(spec, "StreamEnabled") ?? false))
        {
            if (element is { } s && DynamoCall.String(s, "StreamViewType") is not null && !(DynamoCall.Bool(s, "StreamEnabled") ?? false))
            {
                throw DynamoException.Validation("One or more parameter values were invalid: StreamViewType cannot be specified when StreamEnabled is false");
            }
            return current;
        }
        var view = DynamoCall.String(spec, "StreamViewType")
            ?? throw DynamoException.Validation("One or more parameter values were invalid: StreamViewType must be specified when StreamEnabled is true");
        if (!ViewTypes.Contains(view))
        {
            throw DynamoException.Validation($"1 validation error detected: Value '{view}' at 'streamSpecification.streamViewType' failed to satisfy constraint: Member must satisfy enum value set: [NEW_IMAGE, OLD_IMAGE, NEW_AND_OLD_IMAGES, KEYS_ONLY]");
        }
        return new StreamInfo(0, "", view, 0);
    }

    private static Dictionary<string, string> ParseTags(JsonElement? element)
    {
        var tags = new Dictionary<string, string>(StringComparer.Ordinal);
        if (element is not { ValueKind: JsonValueKind.Array } array)
        {
            return tags;
        }
        foreach (var tag in array.EnumerateArray())
        {
            var key = DynamoCall.String(tag, "Key");
            var value = DynamoCall.String(tag, "Value") ?? "";
            if (string.IsNullOrEmpty(key) || key.Length > 128 || value.Length > 256)
            {
                throw DynamoException.Validation("One or more parameter values were invalid: A tag key must be 1 to 128 characters and a tag value at most 256");
            }
            tags[key] = value;
        }
        return tags;
    }

    // ---- the table description ----

    private static void WriteTable(Utf8JsonWriter w, string member, TableInfo table, DynamoCall call, bool stats, (long Count, long Bytes)? counts = null)
    {
        var (count, bytes) = counts ?? (stats ? call.Store.Stats(table) : (0, 0));
        var region = call.Region;
        w.WriteStartObject(member);
        w.WriteStartArray("AttributeDefinitions");
        foreach (var definition in table.AttributeDefinitions)
        {
            w.WriteStartObject();
            w.WriteString("AttributeName", definition.Name);
            w.WriteString("AttributeType", definition.Type.ToString());
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteString("TableName", table.Name);
        TableInfo.WriteKeySchema(w, table.Hash, table.Range);
        w.WriteString("TableStatus", table.Status);
        w.WriteNumber("CreationDateTime", table.CreatedMs / 1000.0);
        WriteThroughput(w, table.ReadCapacity, table.WriteCapacity);
        w.WriteNumber("TableSizeBytes", bytes);
        w.WriteNumber("ItemCount", count);
        w.WriteString("TableArn", table.Arn(region));
        w.WriteString("TableId", table.TableId);
        w.WriteStartObject("BillingModeSummary");
        w.WriteString("BillingMode", table.BillingMode);
        if (table.BillingMode == "PAY_PER_REQUEST")
        {
            w.WriteNumber("LastUpdateToPayPerRequestDateTime", table.CreatedMs / 1000.0);
        }
        w.WriteEndObject();
        foreach (var global in new[] { false, true })
        {
            var indexes = table.Indexes.Where(i => i.Global == global).ToList();
            if (indexes.Count == 0)
            {
                continue;
            }
            w.WriteStartArray(global ? "GlobalSecondaryIndexes" : "LocalSecondaryIndexes");
            foreach (var index in indexes)
            {
                // An index's bytes are its items times the table's average item: summing each entry's item (a lookup per
                // entry) took 3.8 s per index of half a million, and DescribeTable is what SDK waiters and deploy tools
                // poll. DynamoDB's own figures are approximate too (refreshed about every six hours).
                var indexCount = stats ? call.Store.IndexCount(table, index.Name) : 0;
                var indexBytes = count == 0 ? 0 : (long)((Int128)bytes * indexCount / count);
                w.WriteStartObject();
                w.WriteString("IndexName", index.Name);
                TableInfo.WriteKeySchema(w, index.Hash, index.Range);
                TableInfo.WriteProjection(w, index);
                if (global)
                {
                    w.WriteString("IndexStatus", index.Status);
                    if (index.Status == "CREATING")
                    {
                        w.WriteBoolean("Backfilling", true);
                    }
                    WriteThroughput(w, index.ReadCapacity, index.WriteCapacity);
                }
                w.WriteNumber("IndexSizeBytes", indexBytes);
                w.WriteNumber("ItemCount", indexCount);
                w.WriteString("IndexArn", $"{table.Arn(region)}/index/{index.Name}");
                w.WriteEndObject();
            }
            w.WriteEndArray();
        }
        if (table.Stream is { } stream)
        {
            w.WriteStartObject("StreamSpecification");
            w.WriteBoolean("StreamEnabled", true);
            w.WriteString("StreamViewType", stream.ViewType);
            w.WriteEndObject();
            w.WriteString("LatestStreamLabel", stream.Label);
            w.WriteString("LatestStreamArn", table.StreamArn(region));
        }
        else if (call.Store.Streams.Where(s => s.TableId == table.Id).OrderByDescending(static s => s.CreatedMs).FirstOrDefault() is { } last)
        {
            // A disabled stream stays the table's latest for its 24 hours, as DynamoDB shows it.
            w.WriteString("LatestStreamLabel", last.Label);
            w.WriteString("LatestStreamArn", last.Arn(region));
        }
        w.WriteBoolean("DeletionProtectionEnabled", table.DeletionProtection);
        if (table.TableClass != "STANDARD")
        {
            w.WriteStartObject("TableClassSummary");
            w.WriteString("TableClass", table.TableClass);
            w.WriteEndObject();
        }
        w.WriteEndObject();
    }

    private static void WriteThroughput(Utf8JsonWriter w, long read, long write)
    {
        w.WriteStartObject("ProvisionedThroughput");
        w.WriteNumber("NumberOfDecreasesToday", 0);
        w.WriteNumber("ReadCapacityUnits", read);
        w.WriteNumber("WriteCapacityUnits", write);
        w.WriteEndObject();
    }
}
